// The supervised training loop shared by `qslim train` and the tests: SGD/Adam/AdamW with a
// per-iteration LR schedule, cross-entropy (optional label smoothing), top-1/top-5 evaluation,
// a JSON-lines metrics log and a checkpoint per epoch.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/module.h"

namespace qslim::train {

struct TrainConfig {
  std::string model = "lenet";    // registry spec, recorded in checkpoints
  int epochs = 10;
  int64_t batch_size = 128;
  std::string optimizer = "sgd";  // sgd | adam | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";  // cosine | step | constant
  double warmup_epochs = 0;
  int64_t step_size_epochs = 10;    // for "step"
  double gamma = 0.1;               // for "step"
  double label_smoothing = 0.0;
  bool augment = false;             // random crop (pad 2) + horizontal flip
  uint64_t seed = 1;
  int prefetch = 2;
  std::string out_dir;              // checkpoint + metrics.jsonl when not empty
  std::vector<float> mean{0.2860f}, std{0.3530f};  // Fashion-MNIST statistics
};

// Rejects unknown optimizer/schedule names and out-of-range values, listing what is allowed.
void validate(const TrainConfig& c);

struct EvalResult {
  double top1 = 0, top5 = 0, loss = 0;
  int64_t samples = 0;
};

struct EpochReport {
  int epoch = 0;  // 1-based
  double train_loss = 0, train_top1 = 0;
  EvalResult test;
  double lr = 0;
  double images_per_s = 0;
  double seconds = 0;
};

struct BatchProgress {
  int epoch, epochs;
  int64_t batch, batches;
  double loss;
  double images_per_s;
  double eta_seconds;  // for the whole run
};

struct TrainCallbacks {
  std::function<void(const BatchProgress&)> on_batch;
  std::function<void(const EpochReport&)> on_epoch;
};

// Normalises with `mean`/`std` and evaluates in eval mode without recording a graph.
EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const std::vector<float>& mean,
                    const std::vector<float>& std, int64_t batch_size = 256);

std::vector<EpochReport> fit(nn::Module& model, std::shared_ptr<const data::Dataset> train_set,
                             std::shared_ptr<const data::Dataset> test_set, const TrainConfig& config,
                             const TrainCallbacks& callbacks = {});

}  // namespace qslim::train
