// qslim qat: quantization-aware fine-tuning of an FP32 checkpoint from a recipe, then conversion to an
// INT8 model that is saved, reloaded and evaluated, so the reported INT8 accuracy is that of the file.
//
// A QAT recipe is a JSON object
//   {"quant": {PaddleSlim quant_config keys}, "train": {fine-tuning keys}, "notes": "free text"}
// where "train" takes the training-recipe keys that make sense for fine-tuning a given checkpoint
// (not model, dataset, mean or std: those come from the checkpoint).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/factory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/converted_bn_fold.h"
#include "quant/qat.h"
#include "quant/quant_config.h"
#include "quant/quantized_io.h"
#include "tools/checkpoint_job.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "train/dataset_spec.h"
#include "train/recipe.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kInt8File = "model_int8.safetensors";

struct QatArgs {
  std::string from, recipe, out_dir;
  CheckpointJobOptions job;
  // Flags that override the recipe's "train" values when given.
  std::string epochs, epoch_fraction, lr, batch_size, seed;
  CLI::Option *epochs_opt = nullptr, *epoch_fraction_opt = nullptr, *lr_opt = nullptr, *batch_size_opt = nullptr,
              *seed_opt = nullptr;
};

// Fine-tuning defaults where the recipe says nothing. Weight decay is off because it would also pull
// the quanters' learnable clips and steps (PACT alpha, LSQ s) towards zero.
train::TrainConfig qat_defaults() {
  train::TrainConfig c;
  c.epochs = 1;
  c.optimizer = "sgd";
  c.lr = 0.005;
  c.momentum = 0.9;
  c.weight_decay = 0.0;
  c.schedule = "cosine";
  c.augment = false;
  return c;
}

const std::vector<std::string>& top_level_keys() {
  static const std::vector<std::string> k = {"quant", "train", "notes"};
  return k;
}

// The training-recipe keys a QAT recipe's "train" object may hold.
std::vector<std::string> train_keys() {
  std::vector<std::string> k;
  for (const std::string& key : train::recipe_keys())
    if (key != "model" && key != "dataset" && key != "mean" && key != "std" && key != "notes") k.push_back(key);
  return k;
}

struct QatRecipe {
  quant::QuantConfig quant;
  train::TrainConfig train;
  std::string notes;
};

QatRecipe read_recipe(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QSLIM_CHECK(in.good(), "QAT recipe ", path, ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    QSLIM_FAIL("QAT recipe ", path, ": not valid JSON: ", e.what());
  }
  QSLIM_CHECK(j.is_object(), "QAT recipe ", path, ": expected a JSON object {\"quant\": {...}, \"train\": {...}}, got ",
              j.type_name());
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const std::string& k : top_level_keys()) known = known || k == key;
    QSLIM_CHECK(known, "QAT recipe ", path, ": unknown key '", key, "' (allowed: ", join(top_level_keys()),
                "; PaddleSlim quant_config keys go inside \"quant\", fine-tuning keys inside \"train\")");
  }
  QSLIM_CHECK(j.contains("quant") && j["quant"].is_object(), "QAT recipe ", path,
              ": needs a \"quant\" object of PaddleSlim quant_config keys (it may be {} for the defaults)");
  QatRecipe r;
  if (j.contains("notes")) {
    QSLIM_CHECK(j["notes"].is_string(), "QAT recipe ", path, ": key 'notes' must be a string, got ", j["notes"].dump());
    r.notes = j["notes"].get<std::string>();
  }
  r.quant = quant::QuantConfig::from_json(j["quant"].dump(), path + " \"quant\"");
  r.train = qat_defaults();
  if (j.contains("train")) {
    const json& t = j["train"];
    QSLIM_CHECK(t.is_object(), "QAT recipe ", path, ": \"train\" must be an object of fine-tuning keys, got ",
                t.dump());
    const std::vector<std::string> allowed = train_keys();
    for (const auto& [key, value] : t.items()) {
      bool known = false;
      for (const std::string& k : allowed) known = known || k == key;
      QSLIM_CHECK(known, "QAT recipe ", path, ": unknown key '", key, "' in \"train\" (allowed: ", join(allowed),
                  (key == "model" || key == "dataset" || key == "mean" || key == "std")
                      ? "; the model, dataset and normalisation come from the checkpoint)"
                      : ")");
    }
    train::apply_recipe_json(t.dump(), path + " \"train\"", r.train);
  }
  return r;
}

// Recipe "train" < command-line flags.
void apply_flags(const QatArgs& a, train::TrainConfig& c) {
  auto set = [&](CLI::Option* opt, const char* key, const std::string& value) {
    if (opt->count() > 0) {
      std::string flag = std::string("--") + key;
      for (char& ch : flag) ch = ch == '_' ? '-' : ch;
      train::apply_setting(key, value, flag, c);
    }
  };
  set(a.epochs_opt, "epochs", a.epochs);
  set(a.epoch_fraction_opt, "epoch_fraction", a.epoch_fraction);
  set(a.lr_opt, "lr", a.lr);
  set(a.batch_size_opt, "batch_size", a.batch_size);
  set(a.seed_opt, "seed", a.seed);
  try {
    train::validate(c);
  } catch (const Error& e) {
    QSLIM_FAIL("qat: fine-tuning settings of ", a.recipe, " and the flags: ", e.what());
  }
}

void run_qat(const QatArgs& a) {
  set_num_threads(a.job.threads);
  QatRecipe recipe = read_recipe(a.recipe);
  train::TrainConfig& c = recipe.train;
  apply_flags(a, c);

  Fp32Checkpoint ckpt = load_fp32_checkpoint("qat", a.from, a.job.model);
  const CheckpointData e = load_checkpoint_data(a.job, ckpt.metadata, a.from, /*with_train=*/true);
  const train::DatasetSpec& ds = e.spec;
  const train::LoadedData& data = e.data;
  c.mean = e.mean;
  c.std = e.std;
  c.model = ckpt.spec;
  c.dataset = ds.str();
  train::validate(c);
  nn::Module& model = *ckpt.model;

  std::printf("QAT of %s (%s) on %s: %lld train / %lld test images, recipe %s%s%s\n", ckpt.spec.c_str(),
              a.from.c_str(), data.description.c_str(), static_cast<long long>(data.train->size()),
              static_cast<long long>(data.test->size()), a.recipe.c_str(), recipe.notes.empty() ? "" : ": ",
              recipe.notes.c_str());
  std::fflush(stdout);
  std::string fp32_source;
  const train::EvalResult fp32 = fp32_test_figures(a.job, a.from, ckpt.metadata, e, model, fp32_source);

  manual_seed(c.seed);
  std::string layers;
  for (const quant::PlannedLayer& p : quant::plan_quant_aware(model, recipe.quant))
    layers += (layers.empty() ? "" : ", ") + p.name;
  QSLIM_CHECK(!layers.empty(), "qat: recipe ", a.recipe, " quantizes no layer of ", ckpt.spec,
              " (quantize_op_types: ", join(recipe.quant.effective_op_types()), ")");
  quant::quant_aware(model, recipe.quant);
  std::printf("quantizing %s\n", layers.c_str());
  char fraction[48] = "";
  if (c.epoch_fraction < 1) std::snprintf(fraction, sizeof fraction, " (%g of each)", c.epoch_fraction);
  std::printf("fine-tuning %d epochs%s, batch %lld, %s lr %g, %s schedule, weight decay %g, %d threads\n", c.epochs,
              fraction, static_cast<long long>(c.batch_size), c.optimizer.c_str(), c.lr, c.schedule.c_str(), c.weight_decay,
              num_threads());
  std::fflush(stdout);
  Progress progress;
  train::TrainCallbacks cb;
  cb.on_batch = [&](const train::BatchProgress& p) {
    char pre[64], suf[128];
    std::snprintf(pre, sizeof pre, "QAT epoch %d/%d", p.epoch, p.epochs);
    std::snprintf(suf, sizeof suf, "loss %.4f  %.0f img/s  ETA %s", p.loss, p.images_per_s,
                  format_duration(p.eta_seconds).c_str());
    progress.update(pre, p.batch, p.batches, suf);
  };
  cb.on_epoch = [&](const train::EpochReport& r) {
    progress.finish();
    std::printf("QAT epoch %2d/%d  loss %.4f  train top-1 %6.2f%%  test top-1 %6.2f%%  lr %.5f  %6.0f img/s  %5.1fs\n",
                r.epoch, c.epochs, r.train_loss, r.train_top1, r.test.top1, r.lr, r.images_per_s, r.seconds);
    std::fflush(stdout);
  };
  // No out_dir: fit would write a float checkpoint of the fake-quantized model, which nothing reads.
  std::vector<train::EpochReport> history;
  try {
    history = train::fit(model, data.train, data.test, c, cb);
  } catch (const Error& e) {
    progress.finish();
    // The lr is named because learnable quantizer parameters (LSQ steps) are what a too large one
    // breaks first: a step driven below zero.
    QSLIM_FAIL("qat: fine-tuning ", ckpt.spec, " with ", a.recipe, " at lr ", c.lr, " failed: ", e.what());
  }
  QSLIM_CHECK(!history.empty(), "qat: no fine-tuning epoch was run");
  double seconds = 0;
  for (const auto& r : history) seconds += r.seconds;
  const train::EvalResult qat = history.back().test;  // fit evaluated the final QAT-simulated model

  quant::convert(model);
  {
    // The default config leaves each conv's BatchNorm in float: fold those into the converted convs
    // (exact per channel), which shrinks the file and lets the INT8 engine see conv + ReLU.
    Generator g(c.seed);
    const Tensor example = randn({2, data.channels, data.height, data.width}, DType::F32, &g);
    const std::vector<std::string> folded = quant::fold_converted_batch_norms(model, example);
    if (!folded.empty()) std::printf("folded %zu float batch norms into the converted convs\n", folded.size());
  }
  fs::create_directories(a.out_dir);
  const std::string int8_path = (fs::path(a.out_dir) / kInt8File).string();
  quant::save_converted(int8_path, model, recipe.quant, ckpt.spec);
  nn::ModulePtr reloaded = quant::load_converted(int8_path);
  const train::EvalResult int8 = train::evaluate(*reloaded, data.test, c.mean, c.std);

  const auto fp32_bytes = static_cast<int64_t>(fs::file_size(a.from));
  const auto int8_bytes = static_cast<int64_t>(fs::file_size(int8_path));
  const double ratio = static_cast<double>(int8_bytes) / static_cast<double>(fp32_bytes);
  const double diff = int8.top1 - fp32.top1;
  if (a.job.json) {
    json j = {{"model", ckpt.spec},
              {"dataset", ds.str()},
              {"checkpoint", a.from},
              {"recipe", a.recipe},
              {"quant", json::parse(recipe.quant.to_json())},
              {"epochs", c.epochs},
              {"epoch_fraction", c.epoch_fraction},
              {"lr", c.lr},
              {"batch_size", c.batch_size},
              {"test_samples", int8.samples},
              {"fp32_top1", fp32.top1},
              {"fp32_top5", fp32.top5},
              {"fp32_source", fp32_source},
              {"qat_top1", qat.top1},
              {"qat_top5", qat.top5},
              {"int8_top1", int8.top1},
              {"int8_top5", int8.top5},
              {"diff_top1", diff},
              {"fp32_bytes", fp32_bytes},
              {"int8_bytes", int8_bytes},
              {"size_ratio", ratio},
              {"qat_seconds", seconds},
              {"int8_model", int8_path}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::printf("FP32 top-1 %.2f%%\n", fp32.top1);
  std::printf("QAT (simulated) top-1 %.2f%%\n", qat.top1);
  std::printf("INT8 (converted) top-1 %.2f%%  (diff vs FP32 %+.2f)\n", int8.top1, diff);
  std::printf("size: FP32 %lld bytes -> INT8 %lld bytes (%.3fx), %s\n", static_cast<long long>(fp32_bytes),
              static_cast<long long>(int8_bytes), ratio, int8_path.c_str());
}
}  // namespace

void add_qat_command(CLI::App& app) {
  auto a = std::make_shared<QatArgs>();
  CLI::App* cmd = app.add_subcommand(
      "qat", "Quantization-aware fine-tuning of an FP32 checkpoint, then conversion to a saved INT8 model");
  cmd->footer(
      "Recipe: {\"quant\": {PaddleSlim quant_config keys}, \"train\": {epochs, lr, batch_size, ...}, \"notes\": "
      "\"...\"},\ne.g. recipes/qat_default.json. Precedence: built-in fine-tuning defaults (1 whole epoch, SGD momentum "
      "0.9, lr 0.005, cosine, no weight decay) < recipe \"train\" < flags.");
  cmd->add_option("--from", a->from, "FP32 model.safetensors written by qslim train")->required();
  cmd->add_option("--config,--recipe", a->recipe, "QAT recipe JSON, e.g. recipes/qat_default.json")->required();
  cmd->add_option("--out", a->out_dir, "Directory for model_int8.safetensors")->required();
  a->epochs_opt = cmd->add_option("--epochs", a->epochs, "Fine-tuning epochs (default: the recipe's, else 1)")->type_name("INT");
  a->epoch_fraction_opt =
      cmd->add_option("--epoch-fraction", a->epoch_fraction,
                      "Fine-tune on this leading fraction of each shuffled epoch, in (0, 1] (default: the recipe's, else 1)")
          ->type_name("FLOAT");
  a->lr_opt = cmd->add_option("--lr", a->lr, "Peak learning rate (default: the recipe's, else 0.005)")->type_name("FLOAT");
  a->batch_size_opt = cmd->add_option("--batch-size", a->batch_size, "Batch size (default: the recipe's, else 128)")->type_name("INT");
  a->seed_opt = cmd->add_option("--seed", a->seed, "Seed for shuffling (default: the recipe's, else 1)")->type_name("INT");
  add_checkpoint_job_options(cmd, a->job, "Use only the first N training and test images",
                             "Also print the figures as one JSON line");
  add_fp32_reference_option(cmd, a->job);
  cmd->callback([a] { run_qat(*a); });
}

}  // namespace qslim::tools
