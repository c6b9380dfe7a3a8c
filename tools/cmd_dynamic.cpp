// qslim dynamic: weight-only post-training quantization of an FP32 checkpoint (PaddleSlim's
// quant_post_dynamic): int8 or int16 weights with abs-max steps, FP32 activations, no calibration
// data. The quantized file is saved, reloaded and evaluated, so the reported accuracy is the file's.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/dynamic_quant.h"
#include "quant/quantized_io.h"
#include "tools/checkpoint_job.h"
#include "tools/commands.h"
#include "train/dataset_spec.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

struct DynamicArgs {
  std::string from, out_dir;
  quant::DynamicOptions options;
  CheckpointJobOptions job;
};

void run_dynamic(const DynamicArgs& a) {
  set_num_threads(a.job.threads);
  a.options.validate();
  QSLIM_CHECK(fs::exists(a.from), "dynamic: checkpoint ", a.from, " does not exist");
  const std::string label = "INT" + std::to_string(a.options.weight_bits);

  // Quantize and write the files first: a checkpoint that cannot be quantized fails before data loading.
  const quant::DynamicFiles files = quant::quant_post_dynamic(a.from, a.out_dir, a.options, a.job.model);
  auto loaded = nn::load_tensors(a.from);
  nn::ModulePtr fp32_model = models::create_model(files.model_spec);
  fp32_model->load_state_dict(loaded.tensors, /*strict=*/true);
  const CheckpointData e = load_checkpoint_data(a.job, loaded.metadata, a.from, /*with_train=*/false);

  std::vector<std::string> names;
  for (const quant::DynamicLayer& l : files.layers) names.push_back(l.name);
  std::printf("dynamic quantization of %s (%s): %s %s weights, FP32 activations; %s, %lld test images\n",
              files.model_spec.c_str(), a.from.c_str(), label.c_str(), a.options.weight_quantize_type.c_str(),
              e.data.description.c_str(), static_cast<long long>(e.data.test->size()));
  std::printf("quantizing %s\n", join(names).c_str());
  std::fflush(stdout);

  std::string fp32_source;
  const train::EvalResult fp32 = fp32_test_figures(a.job, a.from, loaded.metadata, e, *fp32_model, fp32_source);
  nn::ModulePtr reloaded = quant::load_converted(files.quantized);
  const train::EvalResult q = train::evaluate(*reloaded, e.data.test, e.mean, e.std);
  train::EvalResult test_model;
  if (!files.test_model.empty()) {
    nn::ModulePtr m = models::create_model(files.model_spec);
    nn::load_module(files.test_model, *m, /*strict=*/true);
    test_model = train::evaluate(*m, e.data.test, e.mean, e.std);
  }

  const auto fp32_bytes = static_cast<int64_t>(fs::file_size(a.from));
  const auto q_bytes = static_cast<int64_t>(fs::file_size(files.quantized));
  const double ratio = static_cast<double>(q_bytes) / static_cast<double>(fp32_bytes);
  const double diff = q.top1 - fp32.top1;
  if (a.job.json) {
    json j = {{"model", files.model_spec},
              {"dataset", e.spec.str()},
              {"checkpoint", a.from},
              {"weight_bits", a.options.weight_bits},
              {"weight_quantize_type", a.options.weight_quantize_type},
              {"layers", names},
              {"test_samples", q.samples},
              {"fp32_top1", fp32.top1},
              {"fp32_top5", fp32.top5},
              {"fp32_source", fp32_source},
              {"quant_top1", q.top1},
              {"quant_top5", q.top5},
              {"diff_top1", diff},
              {"fp32_bytes", fp32_bytes},
              {"quant_bytes", q_bytes},
              {"size_ratio", ratio},
              {"quant_model", files.quantized}};
    if (!files.test_model.empty()) {
      j["test_model"] = files.test_model;
      j["test_model_top1"] = test_model.top1;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  std::printf("FP32 top-1 %.2f%%\n", fp32.top1);
  std::printf("%s top-1 %.2f%%  (diff vs FP32 %+.2f)\n", label.c_str(), q.top1, diff);
  if (!files.test_model.empty())
    std::printf("test model (dequantized FP32 weights) top-1 %.2f%%, %s\n", test_model.top1, files.test_model.c_str());
  std::printf("size: FP32 %lld bytes -> %s %lld bytes (%.3fx), %s\n", static_cast<long long>(fp32_bytes), label.c_str(),
              static_cast<long long>(q_bytes), ratio, files.quantized.c_str());
}
}  // namespace

void add_dynamic_command(CLI::App& app) {
  auto a = std::make_shared<DynamicArgs>();
  CLI::App* cmd = app.add_subcommand(
      "dynamic", "Weight-only quantization of an FP32 checkpoint (int8/int16 weights, FP32 activations)");
  cmd->footer(
      "Writes DIR/model_int8.safetensors or DIR/model_int16.safetensors (qslim eval runs it) and, with "
      "--generate-test-model, DIR/model_test_fp32.safetensors holding the dequantized weights.");
  cmd->add_option("--from", a->from, "FP32 model.safetensors written by qslim train")->required();
  cmd->add_option("--out", a->out_dir, "Output directory")->required();
  cmd->add_option("--weight-bits", a->options.weight_bits, "8 or 16")->capture_default_str();
  cmd->add_option("--weight-quantize-type", a->options.weight_quantize_type, "channel_wise_abs_max | abs_max")
      ->capture_default_str();
  cmd->add_option("--quantizable-op-type", a->options.quantizable_op_type,
                  "Layer types to quantize: Conv2D, DepthwiseConv2D, Linear or PaddleSlim's conv2d, "
                  "depthwise_conv2d, mul, matmul, matmul_v2")
      ->capture_default_str();
  cmd->add_option("--not-quant-pattern", a->options.not_quant_pattern,
                  "Skip layers whose dotted name contains one of these")
      ->capture_default_str();
  cmd->add_flag("--generate-test-model", a->options.generate_test_model,
                "Also write an FP32 checkpoint of the dequantized weights");
  add_checkpoint_job_options(cmd, a->job, "Evaluate only the first N test images",
                             "Also print the figures as one JSON line");
  add_fp32_reference_option(cmd, a->job);
  cmd->callback([a] { run_dynamic(*a); });
}

}  // namespace qslim::tools
