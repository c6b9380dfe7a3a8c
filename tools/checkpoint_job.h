// What the commands that work on a saved checkpoint share (eval, ptq, qat, dynamic): the options
// that override its metadata, and finding the dataset and normalisation it was trained with.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "train/dataset_spec.h"
#include "train/report.h"

namespace qslim::tools {

using Metadata = std::map<std::string, std::string>;

struct CheckpointJobOptions {
  std::string model, dataset, data_dir;  // overrides of the checkpoint's "model" and "dataset"
  int threads = 0;
  int64_t limit = -1;
  bool json = false;
  bool fp32_from_checkpoint = false;  // quote the FP32 test figures qslim train recorded
};

// --model, --dataset, --data-dir, --threads, --limit and --json (the helps say which images --limit
// keeps and whether JSON replaces the text or comes after it).
void add_checkpoint_job_options(CLI::App* cmd, CheckpointJobOptions& o, const std::string& limit_help,
                                const std::string& json_help);

// --fp32-from-checkpoint, for the commands that compare a quantized model with its FP32 one.
void add_fp32_reference_option(CLI::App* cmd, CheckpointJobOptions& o);

std::string meta_or(const Metadata& meta, const std::string& key, const std::string& fallback);

// --dataset, else the checkpoint's "dataset" metadata, else fashion-mnist; --data-dir applies to
// Fashion-MNIST.
train::DatasetSpec job_dataset(const CheckpointJobOptions& o, const Metadata& meta);

// The dataset (the training split too when with_train) and the normalisation the checkpoint was
// trained with: its "mean" and "std" metadata, else computed from the training split as qslim
// train does.
struct CheckpointData {
  train::DatasetSpec spec;
  train::LoadedData data;
  std::vector<float> mean, std;
};
CheckpointData load_checkpoint_data(const CheckpointJobOptions& o, const Metadata& meta, const std::string& checkpoint,
                                    bool with_train);

// An FP32 model checkpoint (the model.safetensors of qslim train) loaded into the model its
// metadata names, or --model. Errors start with `command` ("ptq", "qat") and name the file.
struct Fp32Checkpoint {
  nn::ModulePtr model;
  std::string spec;
  Metadata metadata;
};
Fp32Checkpoint load_fp32_checkpoint(const std::string& command, const std::string& path,
                                    const std::string& model_override);

// The FP32 model's test figures. With --fp32-from-checkpoint they are the ones qslim train recorded
// in the checkpoint's metadata when those describe this very test split (no --model, --dataset or
// --limit, the same number of test images); otherwise, and by default, the model is evaluated.
// `source` is set to "checkpoint" or "evaluated", and a line says which.
train::EvalResult fp32_test_figures(const CheckpointJobOptions& o, const std::string& checkpoint, const Metadata& meta,
                                    const CheckpointData& d, nn::Module& model, std::string& source);

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");

}  // namespace qslim::tools
