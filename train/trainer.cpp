#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "core/kernels.h"
#include "data/dataloader.h"
#include "data/transforms.h"
#include "nn/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "train/metrics.h"

namespace qslim::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params) {
  optim::GroupOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  if (c.optimizer == "sgd") {
    o.momentum = c.momentum;
    o.nesterov = c.nesterov;
    return std::make_unique<optim::SGD>(std::move(params), o);
  }
  if (c.optimizer == "adam") return std::make_unique<optim::Adam>(std::move(params), o);
  return std::make_unique<optim::AdamW>(std::move(params), o);
}

std::unique_ptr<optim::LRScheduler> make_schedule(const TrainConfig& c, optim::Optimizer& opt, int64_t steps_per_epoch) {
  int64_t total = steps_per_epoch * c.epochs;
  int64_t warmup = static_cast<int64_t>(std::llround(c.warmup_epochs * steps_per_epoch));
  if (c.schedule == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, total, warmup);
  if (c.schedule == "step") return std::make_unique<optim::StepLR>(opt, c.step_size_epochs * steps_per_epoch, c.gamma);
  return std::make_unique<optim::StepLR>(opt, total + 1, 1.0);  // constant
}

data::TransformPtr make_transform(const TrainConfig& c, bool train) {
  std::vector<data::TransformPtr> ts;
  if (train && c.augment) {
    ts.push_back(std::make_shared<data::RandomCrop>(28, 2));
    ts.push_back(std::make_shared<data::RandomHorizontalFlip>(0.5));
  }
  ts.push_back(std::make_shared<data::Normalize>(c.mean, c.std));
  return std::make_shared<data::Compose>(ts);
}
}  // namespace

void validate(const TrainConfig& c) {
  QSLIM_CHECK(c.optimizer == "sgd" || c.optimizer == "adam" || c.optimizer == "adamw", "unknown optimizer '",
              c.optimizer, "' (allowed: sgd, adam, adamw)");
  QSLIM_CHECK(c.schedule == "cosine" || c.schedule == "step" || c.schedule == "constant", "unknown schedule '",
              c.schedule, "' (allowed: cosine, step, constant)");
  QSLIM_CHECK(c.epochs >= 1, "epochs must be >= 1, got ", c.epochs);
  QSLIM_CHECK(c.batch_size >= 1, "batch size must be >= 1, got ", c.batch_size);
  QSLIM_CHECK(c.lr > 0 && std::isfinite(c.lr), "learning rate must be positive, got ", c.lr);
  QSLIM_CHECK(c.label_smoothing >= 0 && c.label_smoothing < 1, "label smoothing must be in [0, 1), got ",
              c.label_smoothing);
}

EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const std::vector<float>& mean,
                    const std::vector<float>& std, int64_t batch_size) {
  bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  data::DataLoaderOptions o;
  o.batch_size = batch_size;
  o.transform = std::make_shared<data::Normalize>(mean, std);
  data::DataLoader loader(dataset, o);
  EvalResult r;
  double loss_sum = 0;
  int64_t c1 = 0, c5 = 0;
  for (data::Batch& b : loader) {
    Tensor logits = model(b.images);
    int64_t n = b.labels.size(0);
    loss_sum += cross_entropy(logits, b.labels).item() * n;
    c1 += count_topk_correct(logits, b.labels, 1);
    c5 += count_topk_correct(logits, b.labels, 5);
    r.samples += n;
  }
  model.train(was_training);
  if (r.samples > 0) {
    r.top1 = 100.0 * c1 / r.samples;
    r.top5 = 100.0 * c5 / r.samples;
    r.loss = loss_sum / r.samples;
  }
  return r;
}

std::vector<EpochReport> fit(nn::Module& model, std::shared_ptr<const data::Dataset> train_set,
                             std::shared_ptr<const data::Dataset> test_set, const TrainConfig& c,
                             const TrainCallbacks& cb) {
  validate(c);
  data::DataLoaderOptions lo;
  lo.batch_size = c.batch_size;
  lo.shuffle = true;
  lo.seed = c.seed;
  lo.drop_last = true;
  lo.prefetch = c.prefetch;
  lo.transform = make_transform(c, true);
  data::DataLoader loader(train_set, lo);
  const int64_t batches = loader.size();
  QSLIM_CHECK(batches > 0, "training: the training set (", train_set->size(), " examples) is smaller than one batch of ",
              c.batch_size);
  auto opt = make_optimizer(c, model.parameters());
  auto sched = make_schedule(c, *opt, batches);
  std::ofstream log;
  if (!c.out_dir.empty()) {
    std::filesystem::create_directories(c.out_dir);
    log.open(c.out_dir + "/metrics.jsonl", std::ios::trunc);
    QSLIM_CHECK(log.good(), "training: cannot write ", c.out_dir, "/metrics.jsonl");
  }
  std::vector<EpochReport> reports;
  auto run_start = Clock::now();
  int64_t images_done = 0;
  const int64_t images_total = batches * c.batch_size * c.epochs;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    model.train();
    auto t0 = Clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, b = 0;
    double lr = opt->lr();
    for (data::Batch& batch : loader) {
      lr = opt->lr();
      Tensor logits = model(batch.images);
      Tensor loss = cross_entropy(logits, batch.labels, c.label_smoothing);
      double lv = loss.item();
      QSLIM_CHECK(std::isfinite(lv), "training: loss became ", lv, " at epoch ", epoch, ", batch ", b + 1,
                  " (lr ", lr, "); lower the learning rate");
      opt->zero_grad();
      loss.backward();
      opt->step();
      sched->step();
      int64_t n = batch.labels.size(0);
      loss_sum += lv * n;
      correct += count_topk_correct(logits.detach(), batch.labels, 1);
      seen += n;
      images_done += n;
      ++b;
      if (cb.on_batch) {
        double el = seconds_since(run_start);
        double ips = images_done / std::max(el, 1e-9);
        cb.on_batch({epoch, c.epochs, b, batches, lv, seen / std::max(seconds_since(t0), 1e-9),
                     (images_total - images_done) / std::max(ips, 1e-9)});
      }
    }
    EpochReport r;
    r.epoch = epoch;
    r.seconds = seconds_since(t0);
    r.images_per_s = seen / std::max(r.seconds, 1e-9);
    r.train_loss = loss_sum / std::max<int64_t>(seen, 1);
    r.train_top1 = 100.0 * correct / std::max<int64_t>(seen, 1);
    r.lr = lr;
    r.test = evaluate(model, test_set, c.mean, c.std);
    reports.push_back(r);
    if (!c.out_dir.empty()) {
      nlohmann::json j = {{"epoch", epoch}, {"loss", r.train_loss}, {"train_top1", r.train_top1},
                          {"test_loss", r.test.loss}, {"top1", r.test.top1}, {"top5", r.test.top5},
                          {"lr", r.lr}, {"img_s", r.images_per_s}, {"seconds", r.seconds}};
      log << j.dump() << "\n";
      log.flush();
      nn::save_module(c.out_dir + "/model.safetensors", model,
                      {{"model", c.model}, {"epoch", std::to_string(epoch)},
                       {"test_top1", std::to_string(r.test.top1)}, {"format", "qslim-fp32"}});
    }
    if (cb.on_epoch) cb.on_epoch(r);
  }
  return reports;
}

}  // namespace qslim::train
