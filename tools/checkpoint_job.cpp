#include "tools/checkpoint_job.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "models/registry.h"
#include "nn/checkpoint.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

void add_checkpoint_job_options(CLI::App* cmd, CheckpointJobOptions& o, const std::string& limit_help,
                                const std::string& json_help) {
  cmd->add_option("--model", o.model, "Model spec (default: the one recorded in the checkpoint)");
  cmd->add_option("--dataset", o.dataset,
                  "fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | folder:DIR[:size=N,gray] (default: the one "
                  "recorded in the checkpoint, else fashion-mnist)");
  cmd->add_option("--data-dir", o.data_dir, "Fashion-MNIST directory");
  cmd->add_option("--threads", o.threads, "Threads (default: QSLIM_NUM_THREADS or all cores)");
  cmd->add_option("--limit", o.limit, limit_help);
  cmd->add_flag("--json", o.json, json_help);
}

void add_fp32_reference_option(CLI::App* cmd, CheckpointJobOptions& o) {
  cmd->add_flag("--fp32-from-checkpoint", o.fp32_from_checkpoint,
                "Quote the FP32 test figures qslim train recorded in the checkpoint instead of evaluating it again "
                "(when they describe this test split; qslim table uses this)");
}

std::string meta_or(const Metadata& meta, const std::string& key, const std::string& fallback) {
  auto it = meta.find(key);
  return it == meta.end() ? fallback : it->second;
}

train::DatasetSpec job_dataset(const CheckpointJobOptions& o, const Metadata& meta) {
  train::DatasetSpec ds =
      train::DatasetSpec::parse(o.dataset.empty() ? meta_or(meta, "dataset", "fashion-mnist") : o.dataset);
  if (ds.kind == "fashion-mnist" && !o.data_dir.empty()) ds.dir = o.data_dir;
  return ds;
}

CheckpointData load_checkpoint_data(const CheckpointJobOptions& o, const Metadata& meta, const std::string& checkpoint,
                                    bool with_train) {
  CheckpointData e;
  e.spec = job_dataset(o, meta);
  const bool has_stats = meta.count("mean") && meta.count("std");
  e.data = train::load_dataset(e.spec, o.limit, with_train || (!has_stats && e.spec.kind != "fashion-mnist"));
  if (has_stats) {
    e.mean = train::parse_float_list(meta.at("mean"), checkpoint + ": metadata 'mean'");
    e.std = train::parse_float_list(meta.at("std"), checkpoint + ": metadata 'std'");
  } else {
    train::normalization_for(e.spec, e.data, e.mean, e.std);
  }
  return e;
}

Fp32Checkpoint load_fp32_checkpoint(const std::string& command, const std::string& path,
                                    const std::string& model_override) {
  QSLIM_CHECK(std::filesystem::exists(path), command, ": checkpoint ", path, " does not exist");
  auto loaded = nn::load_tensors(path);
  Fp32Checkpoint c;
  c.metadata = loaded.metadata;
  const std::string format = meta_or(c.metadata, "format", "");
  QSLIM_CHECK(format.empty() || format == train::kModelFormat, command, ": ", path, " is a '", format,
              "' file; --from takes an FP32 model checkpoint ('", train::kModelFormat,
              "', the model.safetensors written by qslim train)");
  c.spec = model_override.empty() ? meta_or(c.metadata, "model", "") : model_override;
  QSLIM_CHECK(!c.spec.empty(), command, ": ", path,
              ": no 'model' entry in the checkpoint metadata; pass --model to say which network it holds");
  c.model = models::create_model(c.spec);
  try {
    c.model->load_state_dict(loaded.tensors, true);
  } catch (const Error& e) {
    QSLIM_FAIL(command, ": ", path, ": does not fit model '", c.spec, "': ", e.what());
  }
  return c;
}

train::EvalResult fp32_test_figures(const CheckpointJobOptions& o, const std::string& checkpoint, const Metadata& meta,
                                    const CheckpointData& d, nn::Module& model, std::string& source) {
  if (o.fp32_from_checkpoint && o.model.empty() && o.dataset.empty() && o.limit < 0) {
    const char* keys[] = {"test_top1", "test_top5", "test_loss", "test_samples"};
    bool recorded = true;
    for (const char* k : keys) recorded = recorded && meta.count(k) > 0;
    if (recorded) {
      train::EvalResult r;
      try {
        r.top1 = std::stod(meta.at("test_top1"));
        r.top5 = std::stod(meta.at("test_top5"));
        r.loss = std::stod(meta.at("test_loss"));
        r.samples = std::stoll(meta.at("test_samples"));
      } catch (const std::exception&) {
        QSLIM_FAIL(checkpoint, ": metadata test figures '", meta.at("test_top1"), "', '", meta.at("test_top5"), "', '",
                   meta.at("test_loss"), "', '", meta.at("test_samples"), "' are not numbers");
      }
      if (r.samples == d.data.test->size()) {
        source = "checkpoint";
        std::printf("FP32 test figures: recorded in the checkpoint by qslim train (%lld images)\n",
                    static_cast<long long>(r.samples));
        return r;
      }
    }
  }
  source = "evaluated";
  return train::evaluate(model, d.data.test, d.mean, d.std);
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string s;
  for (const std::string& x : items) {
    if (!s.empty()) s += separator;
    s += x;
  }
  return s;
}

}  // namespace qslim::tools
