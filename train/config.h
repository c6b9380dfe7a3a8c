// What a training run does: model, dataset, optimisation and augmentation (the keys a recipe can
// fix, see train/recipe.h) plus run settings that never change the result's meaning (where to
// write, resuming, stopping early).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qslim::train {

struct TrainConfig {
  std::string model = "lenet";            // registry spec, recorded in checkpoints
  std::string dataset = "fashion-mnist";  // dataset spec, see train/dataset_spec.h
  int epochs = 10;
  double epoch_fraction = 1.0;  // each epoch runs this leading fraction of its shuffled batches
  int64_t batch_size = 128;
  std::string optimizer = "sgd";  // sgd | adam | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";  // cosine | step | constant (per-iteration)
  double warmup_epochs = 0;
  int64_t step_size_epochs = 10;    // for "step"
  double gamma = 0.1;               // for "step"
  double label_smoothing = 0.0;
  bool augment = false;             // enables the two augmentations below
  int64_t crop_padding = 2;         // random crop of the image size after zero padding (0: no crop)
  bool flip = true;                 // random horizontal flip
  uint64_t seed = 1;
  std::vector<float> mean{0.2860f}, std{0.3530f};  // per-channel normalisation (Fashion-MNIST's)

  // Run settings, not part of recipes.
  int prefetch = 2;
  int workers = 1;           // data loader threads (the batches are the same for any count)
  std::string out_dir;       // model.safetensors, train_state.safetensors, metrics.jsonl, metrics.svg
  std::string resume_from;   // a train_state.safetensors to continue from
  int stop_after_epoch = 0;  // > 0: return after this epoch (the schedule still spans `epochs`)
  int64_t limit = -1;        // the caller's example limit (fit does not apply it), recorded in the
                             // training state so that a resumed run loads the same slice
};

// Rejects unknown optimizer/schedule names and out-of-range values, listing what is allowed.
void validate(const TrainConfig& c);

}  // namespace qslim::train
