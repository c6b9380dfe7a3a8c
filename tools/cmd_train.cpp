// qslim train: train a zoo model on a dataset, from flags or a recipe, report test accuracy per epoch,
// checkpoint per epoch, and resume an interrupted run bit for bit.
#include <cstdio>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "tools/checkpoint_job.h"
#include "tools/commands.h"
#include "tools/peak_rss.h"
#include "tools/progress.h"
#include "train/dataset_spec.h"
#include "train/recipe.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {

// A command-line flag that overrides one recipe key when given.
struct KeyFlag {
  std::string key;
  std::string value;
  bool flag_value = false;
  bool is_bool = false;
  CLI::Option* option = nullptr;
};

struct TrainArgs {
  std::deque<KeyFlag> flags;  // deque: CLI11 keeps pointers to the values
  std::string recipe, resume, from, out_dir, data_dir;
  CheckpointJobOptions from_job;  // --fp32-from-checkpoint (the rest is filled from the train flags)
  int threads = 0;
  int workers = 1;
  int64_t limit = -1;
  int stop_after = 0;
  bool json = false;
  CLI::Option *threads_opt = nullptr, *limit_opt = nullptr;
};

// Keys a resumed run may change: the others would silently break the continuation.
bool changeable_on_resume(const std::string& key) { return key == "epochs" || key == "dataset"; }

void run_train(TrainArgs& a) {
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const KeyFlag& f : a.flags)
    if (f.option->count() > 0) overrides.emplace_back(f.key, f.is_bool ? (f.flag_value ? "true" : "false") : f.value);

  train::TrainConfig base;
  std::string resume_path;
  train::TrainState saved;
  if (!a.resume.empty()) {
    QSLIM_CHECK(a.recipe.empty(), "--recipe and --resume cannot be combined: a resumed run continues with the "
                                  "configuration saved in its checkpoint");
    resume_path = train::resolve_resume_path(a.resume);
    saved = train::load_train_state(resume_path);
    train::apply_recipe_json(saved.config_json, "training state " + resume_path + " config", base);
    for (const auto& [key, value] : overrides) {
      std::string flag = "--" + key;
      for (char& ch : flag) ch = ch == '_' ? '-' : ch;
      QSLIM_CHECK(changeable_on_resume(key), "--resume continues the saved configuration; ", flag,
                  " cannot change on resume (only --epochs and --dataset can)");
    }
    if (a.threads_opt->count() == 0) a.threads = saved.threads;
    if (a.limit_opt->count() == 0) a.limit = saved.limit;
    if (a.out_dir.empty()) a.out_dir = std::filesystem::path(resume_path).parent_path().string();
  }
  // Fine-tuning starts from a trained model: its spec, dataset and normalisation are the defaults.
  Metadata from_meta;
  if (!a.from.empty()) {
    QSLIM_CHECK(a.resume.empty(), "--from and --resume cannot be combined: --resume continues a run, --from starts "
                                  "a new one from a trained model's weights");
    from_meta = load_fp32_checkpoint("train --from", a.from, "").metadata;
    base.model = meta_or(from_meta, "model", base.model);
    base.dataset = meta_or(from_meta, "dataset", base.dataset);
    if (from_meta.count("mean") && from_meta.count("std")) {
      base.mean = train::parse_float_list(from_meta.at("mean"), a.from + ": metadata 'mean'");
      base.std = train::parse_float_list(from_meta.at("std"), a.from + ": metadata 'std'");
    }
  }
  QSLIM_CHECK(!a.from_job.fp32_from_checkpoint || !a.from.empty(), "--fp32-from-checkpoint needs --from");
  QSLIM_CHECK(a.stop_after == 0 || !a.out_dir.empty(),
              "--stop-after needs --out: the state to resume from is saved there");
  train::ResolvedConfig rc = train::resolve_config(base, a.recipe, overrides);
  train::TrainConfig& c = rc.config;
  c.out_dir = a.out_dir;
  c.resume_from = resume_path;
  c.stop_after_epoch = a.stop_after;
  c.limit = a.limit;
  c.workers = a.workers;
  set_num_threads(a.threads);
  if (!resume_path.empty() && saved.threads != num_threads())
    std::printf("note: the checkpoint was trained with %d threads and this run uses %d; the results can differ "
                "in the last bits from an uninterrupted run\n",
                saved.threads, num_threads());

  train::DatasetSpec ds = train::DatasetSpec::parse(c.dataset);
  if (ds.kind == "fashion-mnist" && !a.data_dir.empty()) {
    QSLIM_CHECK(ds.dir.empty() || ds.dir == a.data_dir, "--data-dir ", a.data_dir, " contradicts --dataset ", c.dataset);
    ds.dir = a.data_dir;
    c.dataset = ds.str();  // recorded in the checkpoints, so that resume and eval find the same files
  }
  train::LoadedData data = train::load_dataset(ds, a.limit);
  const bool from_stats = from_meta.count("mean") && from_meta.count("std");
  if (resume_path.empty() && !from_stats && !rc.set_keys.count("mean") && !rc.set_keys.count("std"))
    train::normalization_for(ds, data, c.mean, c.std);
  c.model = train::resolve_model_spec(c.model, data);
  train::validate(c);

  manual_seed(c.seed);
  auto model = models::create_model(c.model);
  train::EvalResult start;
  std::string start_source;
  if (!a.from.empty()) {
    try {
      nn::load_module(a.from, *model, /*strict=*/true);
    } catch (const Error& e) {
      QSLIM_FAIL("train --from ", a.from, ": does not fit model '", c.model, "': ", e.what());
    }
    CheckpointJobOptions o = a.from_job;
    o.limit = a.limit;
    if (c.model != meta_or(from_meta, "model", c.model)) o.model = c.model;
    if (c.dataset != meta_or(from_meta, "dataset", c.dataset)) o.dataset = c.dataset;
    const CheckpointData d{ds, data, c.mean, c.std};
    start = fp32_test_figures(o, a.from, from_meta, d, *model, start_source);
    std::printf("starting from %s: test top-1 %.2f%% top-5 %.2f%%\n", a.from.c_str(), start.top1, start.top5);
  }
  if (!a.recipe.empty())
    std::printf("recipe %s%s%s\n", a.recipe.c_str(), rc.notes.empty() ? "" : ": ", rc.notes.c_str());
  if (!resume_path.empty())
    std::printf("resuming %s after epoch %d of %d\n", resume_path.c_str(), saved.epoch, c.epochs);
  std::printf("training %s (%lld parameters) on %s: %lld train / %lld test images, %d epochs, batch %lld, %s lr %g%s, "
              "%s schedule, %d threads\n",
              c.model.c_str(), static_cast<long long>(model->num_parameters()), data.description.c_str(),
              static_cast<long long>(data.train->size()), static_cast<long long>(data.test->size()), c.epochs,
              static_cast<long long>(c.batch_size), c.optimizer.c_str(), c.lr,
              c.optimizer == "sgd" && c.nesterov ? " nesterov" : "", c.schedule.c_str(), num_threads());
  std::fflush(stdout);
  Progress progress;
  train::TrainCallbacks cb;
  cb.on_batch = [&](const train::BatchProgress& p) {
    char pre[64], suf[128];
    std::snprintf(pre, sizeof pre, "epoch %d/%d", p.epoch, p.epochs);
    std::snprintf(suf, sizeof suf, "loss %.4f  %.0f img/s  ETA %s", p.loss, p.images_per_s,
                  format_duration(p.eta_seconds).c_str());
    progress.update(pre, p.batch, p.batches, suf);
  };
  cb.on_epoch = [&](const train::EpochReport& r) {
    progress.finish();
    std::printf("epoch %2d/%d  loss %.4f  train top-1 %6.2f%%  test top-1 %6.2f%%  top-5 %6.2f%%  lr %.5f  "
                "%6.0f img/s  %5.1fs\n",
                r.epoch, c.epochs, r.train_loss, r.train_top1, r.test.top1, r.test.top5, r.lr, r.images_per_s,
                r.seconds);
    std::fflush(stdout);
  };
  auto history = train::fit(*model, data.train, data.test, c, cb);
  QSLIM_CHECK(!history.empty(), "training: no epoch was run");
  double total = 0, ips = 0, cpu = 0, images = 0;
  int run_epochs = 0;
  for (const auto& r : history) {
    total += r.seconds;
    if (resume_path.empty() || r.epoch > saved.epoch)
      ips += r.images_per_s, ++run_epochs, cpu += r.cpu_seconds, images += r.images_per_s * r.seconds;
  }
  const auto& last = history.back();
  const std::string ckpt = c.out_dir.empty() ? "" : (std::filesystem::path(c.out_dir) / train::kModelFile).string();
  if (a.json) {
    nlohmann::json j = {{"model", c.model},          {"dataset", c.dataset},
                        {"epochs", last.epoch},      {"top1", last.test.top1},
                        {"top5", last.test.top5},    {"test_loss", last.test.loss},
                        {"train_loss", last.train_loss}, {"seconds", total},
                        {"img_s", run_epochs ? ips / run_epochs : 0.0},
                        {"img_per_cpu_s", cpu > 0 ? images / cpu : 0.0}, {"checkpoint", ckpt},
                        {"peak_rss_mib", peak_rss_mib()}};
    if (!a.from.empty()) {
      j["from"] = a.from;
      j["fp32_top1"] = start.top1;
      j["fp32_top5"] = start.top5;
      j["fp32_source"] = start_source;
      j["diff_top1"] = last.test.top1 - start.top1;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  const bool stopped = last.epoch < c.epochs;
  std::printf("%s: %s test top-1 %.2f%% top-5 %.2f%% after %d%s epochs (%s training, peak RSS %.0f MiB)%s%s\n",
              stopped ? "stopped" : "final", c.model.c_str(), last.test.top1, last.test.top5, last.epoch,
              stopped ? (" of " + std::to_string(c.epochs)).c_str() : "", format_duration(total).c_str(),
              peak_rss_mib(), ckpt.empty() ? "" : ", checkpoint ", ckpt.c_str());
  if (!a.from.empty())
    std::printf("vs the starting model (%s): top-1 %+.2f\n", start_source.c_str(), last.test.top1 - start.top1);
  if (stopped && !c.out_dir.empty())
    std::printf("continue with: qslim train --resume %s\n", c.out_dir.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model (Fashion-MNIST, CIFAR-10/100 or an image folder)");
  cmd->footer(
      "Precedence: built-in defaults < --recipe (or the configuration saved in a --resume checkpoint) < flags.\n"
      "Datasets: fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | folder:DIR[:size=N,gray]");
  const nlohmann::json defaults = nlohmann::json::parse(train::config_to_json(train::TrainConfig{}));
  auto key_option = [&](const std::string& flag, const std::string& key, const std::string& help) {
    KeyFlag& f = a->flags.emplace_back();
    f.key = key;
    const nlohmann::json& d = defaults.at(key);
    const char* type = d.is_number_integer() ? "INT" : d.is_number() ? "FLOAT" : d.is_array() ? "LIST" : "TEXT";
    f.option = cmd->add_option(flag, f.value, help)->type_name(type);
    if (!d.is_array()) f.option->default_str(d.is_string() ? d.get<std::string>() : d.dump());
  };
  auto key_flag = [&](const std::string& flags, const std::string& key, const std::string& help) {
    KeyFlag& f = a->flags.emplace_back();
    f.key = key;
    f.is_bool = true;
    f.flag_value = defaults.at(key).get<bool>();
    f.option = cmd->add_flag(flags, f.flag_value, help);
  };
  cmd->add_option("--recipe", a->recipe, "Recipe JSON (e.g. recipes/resnet20.json); flags override its values");
  cmd->add_option("--from", a->from,
                  "Fine-tune: start from the weights of this model.safetensors (its model, dataset and "
                  "normalisation unless given)");
  add_fp32_reference_option(cmd, a->from_job);  // with --from: the starting model's figures
  cmd->add_option("--resume", a->resume,
                  "Continue from DIR/train_state.safetensors (or that FILE) after its last epoch, bit for bit");
  key_option("--model", "model", "Model spec, e.g. lenet or resnet20:width=16");
  key_option("--dataset", "dataset", "fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | folder:DIR[:size=N,gray]");
  key_option("--epochs", "epochs", "Epochs");
  key_option("--epoch-fraction", "epoch_fraction", "Run only this leading fraction of each shuffled epoch, in (0, 1]");
  key_option("--batch-size", "batch_size", "Batch size");
  key_option("--optimizer", "optimizer", "sgd | adam | adamw");
  key_option("--lr", "lr", "Peak learning rate");
  key_option("--momentum", "momentum", "SGD momentum");
  key_flag("--nesterov,!--no-nesterov", "nesterov", "Nesterov momentum");
  key_option("--weight-decay", "weight_decay", "Weight decay");
  key_option("--schedule", "schedule", "cosine | step | constant");
  key_option("--warmup-epochs", "warmup_epochs", "Linear warm-up epochs");
  key_option("--step-size-epochs", "step_size_epochs", "Epochs between decays of the step schedule");
  key_option("--gamma", "gamma", "Decay factor of the step schedule");
  key_option("--label-smoothing", "label_smoothing", "Label smoothing");
  key_flag("--augment,!--no-augment", "augment", "Augment: random crop after zero padding and horizontal flip");
  key_option("--crop-padding", "crop_padding", "Padding of the random crop (0: no crop)");
  key_flag("--flip,!--no-flip", "flip", "Random horizontal flip when augmenting");
  key_option("--seed", "seed", "Seed for initialisation, shuffling and augmentation");
  key_option("--mean", "mean", "Normalisation means per channel, comma-separated (default: from the dataset)");
  key_option("--std", "std", "Normalisation stds per channel, comma-separated (default: from the dataset)");
  a->threads_opt = cmd->add_option("--threads", a->threads, "Threads (default: QSLIM_NUM_THREADS or all cores)");
  cmd->add_option("--workers", a->workers, "Data loader threads")->capture_default_str();
  cmd->add_option("--out", a->out_dir,
                  "Directory for model.safetensors, train_state.safetensors, metrics.jsonl and metrics.svg");
  cmd->add_option("--data-dir", a->data_dir, "Fashion-MNIST directory (default: $QSLIM_FASHION_MNIST or "
                                             "/usr/share/datasets/fashion-mnist)");
  a->limit_opt = cmd->add_option("--limit", a->limit, "Use only the first N training and test images");
  cmd->add_option("--stop-after", a->stop_after, "Stop after this epoch (continue later with --resume)");
  cmd->add_flag("--json", a->json, "Print the final figures as one JSON line");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace qslim::tools
