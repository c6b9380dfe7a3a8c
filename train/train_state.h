// Checkpoint files written by training, in the safetensors layout (nn/checkpoint.h):
//   model.safetensors        the model's state dict alone, for `qslim eval`, quantization, export;
//   train_state.safetensors  everything needed to continue bit for bit: the model's state dict
//                            (unprefixed), the optimizer state ("optim."), the scheduler state
//                            ("sched."), and in the metadata the epochs done, the global generator
//                            state, the configuration (JSON), the per-epoch history and the thread count.
// Both are written to a temporary file and renamed, so an interruption never leaves a torn file.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "train/config.h"
#include "train/report.h"

namespace qslim::train {

inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kTrainStateFile = "train_state.safetensors";
inline constexpr const char* kTrainStateFormat = "qslim-train-state";
inline constexpr const char* kModelFormat = "qslim-fp32";

struct TrainState {
  int epoch = 0;                // epochs completed
  std::string config_json;      // config_to_json of the run (train/recipe.h)
  std::string generator_state;  // global_generator() after the epoch
  int threads = 0;              // qslim::num_threads() of the run
  int64_t limit = -1;           // TrainConfig::limit of the run
  int64_t train_examples = 0;   // size of the training set it saw
  std::vector<EpochReport> history;
  nn::NamedTensors model, optimizer, scheduler;
};

// A directory means DIR/train_state.safetensors; a file is taken as is. Errors when it is missing.
std::string resolve_resume_path(const std::string& dir_or_file);

void save_train_state(const std::string& path, const TrainState& state);
// Errors name the file: not a training-state checkpoint, missing or malformed metadata.
TrainState load_train_state(const std::string& path);

// Metadata of model.safetensors: "model" (spec), "dataset", "mean" and "std" (JSON arrays),
// "epoch", "format", and the saved model's test figures "test_top1", "test_top5", "test_loss" and
// "test_samples" (so later jobs can quote them instead of evaluating it again).
std::map<std::string, std::string> model_metadata(const TrainConfig& config, int epoch, const EvalResult& test);

// Reads a JSON array of numbers such as the "mean"/"std" metadata; errors name `where`.
std::vector<float> parse_float_list(const std::string& json_text, const std::string& where);

}  // namespace qslim::train
