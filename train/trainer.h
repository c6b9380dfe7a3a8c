// The supervised training loop shared by `qslim train` and the tests: SGD/Adam/AdamW with a
// per-iteration LR schedule, cross-entropy (optional label smoothing), top-1/top-5 evaluation,
// and, with an output directory, after every epoch: a JSON line in metrics.jsonl, the curves in
// metrics.svg, model.safetensors and train_state.safetensors (train/train_state.h), from which a run
// resumes with results identical bit for bit to an uninterrupted one (same thread count).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/module.h"
#include "train/config.h"
#include "train/report.h"

namespace qslim::train {

struct BatchProgress {
  int epoch, epochs;
  int64_t batch, batches;
  double loss;
  double images_per_s;
  double eta_seconds;  // for the rest of this run
};

struct TrainCallbacks {
  std::function<void(const BatchProgress&)> on_batch;
  std::function<void(const EpochReport&)> on_epoch;
};

// Normalises with `mean`/`std` and evaluates in eval mode without recording a graph.
EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const std::vector<float>& mean,
                    const std::vector<float>& std, int64_t batch_size = 256);

// Trains `model` (built and initialised by the caller, e.g. after manual_seed(config.seed)) for
// config.epochs epochs, or continues from config.resume_from: the model, optimizer, scheduler, global
// generator and data order are restored and training goes on from the next epoch. Returns the
// reports of all epochs, those of the resumed-from run included.
std::vector<EpochReport> fit(nn::Module& model, std::shared_ptr<const data::Dataset> train_set,
                             std::shared_ptr<const data::Dataset> test_set, const TrainConfig& config,
                             const TrainCallbacks& callbacks = {});

}  // namespace qslim::train
