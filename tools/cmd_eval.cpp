// qslim eval: evaluate a checkpoint (model.safetensors or train_state.safetensors) on the test split of
// the dataset it was trained on, normalised as it was in training. A converted INT8 file runs on
// the simulated path, or with --int8 on the integer engine (--compare: both, and their agreement).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "core/parallel.h"
#include "data/dataloader.h"
#include "data/transforms.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/int8_engine.h"
#include "quant/quantized_io.h"
#include "tools/checkpoint_job.h"
#include "tools/commands.h"
#include "train/dataset_spec.h"
#include "train/metrics.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
struct EvalArgs {
  std::string checkpoint;
  CheckpointJobOptions job;
  int64_t batch_size = 256;
  bool int8 = false;
  bool compare = false;
};

// Top-1/top-5 of the INT8 engine and, with `compare`, of the simulated path and their agreement.
struct Int8Eval {
  double top1 = 0, top5 = 0, sim_top1 = 0, sim_top5 = 0, agreement = 0;
  int64_t samples = 0;
};

std::vector<int64_t> row_argmax(const Tensor& logits) {
  const auto v = logits.to_vector<float>();
  const int64_t n = logits.size(0), k = logits.size(1);
  std::vector<int64_t> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = std::max_element(v.begin() + i * k, v.begin() + (i + 1) * k) - (v.begin() + i * k);
  return out;
}

Int8Eval eval_int8(const nn::ModulePtr& model, const train::LoadedData& data, const std::vector<float>& mean,
                   const std::vector<float>& std, int64_t batch_size, bool compare) {
  quant::Int8Engine engine(model, {data.channels, data.height, data.width});
  NoGradGuard no_grad;
  data::DataLoaderOptions o;
  o.batch_size = batch_size;
  o.transform = std::make_shared<data::Normalize>(mean, std);
  data::DataLoader loader(data.test, o);
  int64_t c1 = 0, c5 = 0, s1 = 0, s5 = 0, same = 0;
  Int8Eval r;
  for (data::Batch& b : loader) {
    Tensor logits = engine.run(b.images);
    c1 += train::count_topk_correct(logits, b.labels, 1);
    c5 += train::count_topk_correct(logits, b.labels, 5);
    if (compare) {
      Tensor sim = (*model)(b.images);
      s1 += train::count_topk_correct(sim, b.labels, 1);
      s5 += train::count_topk_correct(sim, b.labels, 5);
      const auto a = row_argmax(logits), c = row_argmax(sim);
      for (size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
    }
    r.samples += b.labels.size(0);
  }
  if (r.samples > 0) {
    r.top1 = 100.0 * c1 / r.samples;
    r.top5 = 100.0 * c5 / r.samples;
    r.sim_top1 = 100.0 * s1 / r.samples;
    r.sim_top5 = 100.0 * s5 / r.samples;
    r.agreement = 100.0 * same / r.samples;
  }
  return r;
}

void run_eval(const EvalArgs& a) {
  set_num_threads(a.job.threads);
  auto loaded = nn::load_tensors(a.checkpoint);
  const auto& meta = loaded.metadata;
  std::string spec = a.job.model.empty() ? meta_or(meta, "model", "") : a.job.model;
  QSLIM_CHECK(!spec.empty(), a.checkpoint,
              ": no 'model' entry in the checkpoint metadata; pass --model to say which network it holds");
  // A training state holds the model's tensors unprefixed beside "optim." and "sched." entries.
  nn::NamedTensors tensors;
  const bool train_state = meta_or(meta, "format", "") == train::kTrainStateFormat;
  for (auto& [name, t] : loaded.tensors)
    if (!train_state || (name.rfind("optim.", 0) != 0 && name.rfind("sched.", 0) != 0)) tensors.emplace_back(name, t);
  // A converted INT8 model (qslim qat / ptq) is rebuilt from its own metadata and runs on the
  // simulated path; --model cannot reinterpret it.
  const bool converted = meta_or(meta, "format", "") == quant::kConvertedFormat;
  QSLIM_CHECK(!converted || a.job.model.empty() || a.job.model == meta_or(meta, "model", ""), a.checkpoint,
              ": is a converted INT8 model of '", meta_or(meta, "model", ""), "' (", quant::kConvertedFormat,
              "); --model ", a.job.model, " does not apply to it");
  QSLIM_CHECK(!a.int8 || converted, a.checkpoint, ": --int8 runs converted INT8 files (", quant::kConvertedFormat,
              ", written by qslim qat / ptq / dynamic); this file is ",
              meta_or(meta, "format", "an FP32 checkpoint"));
  QSLIM_CHECK(!a.compare || a.int8, "qslim eval: --compare needs --int8");
  nn::ModulePtr model;
  if (converted) {
    model = quant::load_converted(a.checkpoint);
  } else {
    model = models::create_model(spec);
    try {
      model->load_state_dict(tensors, true);
    } catch (const Error& e) {
      QSLIM_FAIL(a.checkpoint, ": does not fit model '", spec, "': ", e.what());
    }
  }
  const CheckpointData e = load_checkpoint_data(a.job, meta, a.checkpoint, /*with_train=*/false);
  const train::DatasetSpec& ds = e.spec;
  const train::LoadedData& data = e.data;
  const std::vector<float>& mean = e.mean;
  const std::vector<float>& std = e.std;
  QSLIM_CHECK(mean.size() == 1 || static_cast<int64_t>(mean.size()) == data.channels, a.checkpoint, ": ",
              mean.size(), " normalisation means for ", data.channels, "-channel images of ", ds.str());
  if (a.int8) {
    const Int8Eval r = eval_int8(model, data, mean, std, a.batch_size, a.compare);
    if (a.job.json) {
      nlohmann::json j = {{"checkpoint", a.checkpoint}, {"model", spec},  {"dataset", ds.str()}, {"int8", true},
                          {"engine", "int8"},           {"top1", r.top1}, {"top5", r.top5},      {"samples", r.samples}};
      if (a.compare) {
        j["simulated_top1"] = r.sim_top1;
        j["simulated_top5"] = r.sim_top5;
        j["top1_agreement"] = r.agreement;
      }
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("%s (%s, INT8 engine): test top-1 %.2f%%  top-5 %.2f%%  on %lld images\n", a.checkpoint.c_str(),
                spec.c_str(), r.top1, r.top5, static_cast<long long>(r.samples));
    if (a.compare)
      std::printf("%s (%s, simulated path): test top-1 %.2f%%  top-5 %.2f%%; INT8 engine and simulated path agree "
                  "on the top-1 of %.2f%% of the images\n",
                  a.checkpoint.c_str(), spec.c_str(), r.sim_top1, r.sim_top5, r.agreement);
    return;
  }
  auto r = train::evaluate(*model, data.test, mean, std, a.batch_size);
  if (a.job.json) {
    nlohmann::json j = {{"checkpoint", a.checkpoint}, {"model", spec}, {"dataset", ds.str()}, {"top1", r.top1},
                        {"int8", converted},         {"top5", r.top5},           {"loss", r.loss}, {"samples", r.samples}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%s (%s%s): test top-1 %.2f%%  top-5 %.2f%%  loss %.4f  on %lld images\n", a.checkpoint.c_str(),
              spec.c_str(), converted ? ", INT8 converted, simulated path" : "", r.top1, r.top5, r.loss,
              static_cast<long long>(r.samples));
}
}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on the test split of its dataset");
  cmd->add_option("checkpoint,--checkpoint", a->checkpoint,
                  "model.safetensors or train_state.safetensors written by qslim train, or a converted INT8 file")
      ->required();
  cmd->add_option("--batch-size", a->batch_size, "Batch size")->capture_default_str();
  add_checkpoint_job_options(cmd, a->job, "Evaluate only the first N test images", "Print the figures as one JSON line");
  cmd->add_flag("--int8", a->int8, "Run a converted INT8 file on the integer engine (default: simulated path)");
  cmd->add_flag("--compare", a->compare, "With --int8: also run the simulated path and report the top-1 agreement");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace qslim::tools
