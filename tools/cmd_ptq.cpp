// qslim ptq: post-training static quantization of an FP32 checkpoint (quant::quant_post_static),
// calibrated on the first batch_nums x batch_size training images (no shuffling, no augmentation),
// then saved, reloaded and evaluated, so the reported INT8 accuracy is that of the file.
// Flags only (no recipe): every option of quant_post_static has one.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/parallel.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/quant_post_static.h"
#include "quant/quantized_io.h"
#include "tools/checkpoint_job.h"
#include "tools/commands.h"
#include "tools/peak_rss.h"
#include "tools/progress.h"
#include "train/dataset_spec.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kInt8File = "model_int8.safetensors";

struct PtqArgs {
  std::string from, out_dir;
  CheckpointJobOptions job;
  std::string algo = "hist", weight_quantize_type = "channel_wise_abs_max", round_type = "round";
  std::string quantize_op_types, cache_dir, kl_start = "tensorrt";
  int64_t batch_size = 16, batch_nums = 10, keep_fp32 = 0, adaround_iters = 1000;
  int weight_bits = 8, activation_bits = 8;
  double hist_percent = 0.99999;
  bool bias_correction = false, report = false, full_quantize = false, measure_overhead = false;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string float_list(const std::vector<float>& v) {
  std::string s;
  for (float x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

void run_ptq(const PtqArgs& a) {
  set_num_threads(a.job.threads);
  quant::QuantPostStaticOptions o;
  o.algo = a.algo;
  o.weight_quantize_type = a.weight_quantize_type;
  o.weight_bits = a.weight_bits;
  o.activation_bits = a.activation_bits;
  if (!a.quantize_op_types.empty()) o.quantizable_op_type = split_commas(a.quantize_op_types);
  o.is_full_quantize = a.full_quantize;
  o.observer.hist_percent = a.hist_percent;
  QSLIM_CHECK(a.kl_start == "tensorrt" || a.kl_start == "paddle", "ptq: unknown --kl-start '", a.kl_start,
              "'; allowed: tensorrt (search from bin 128), paddle (from the middle bin)");
  o.observer.kl_start = a.kl_start == "paddle" ? quant::KlStart::Paddle : quant::KlStart::TensorRT;
  o.batch_size = a.batch_size;
  o.batch_nums = a.batch_nums;
  o.bias_correction = a.bias_correction;
  o.round_type = a.round_type;
  o.adaround.iterations = a.adaround_iters;
  o.is_use_cache_file = !a.cache_dir.empty();
  o.cache_dir = a.cache_dir;
  o.report = a.report;
  o.keep_fp32_layers = a.keep_fp32;
  o.measure_overhead = a.measure_overhead;
  quant::ptq_config(o);  // bad algo, weight type or bits fail before any data is loaded
  QSLIM_CHECK(o.round_type == "round" || o.round_type == "adaround", "ptq: unknown --round-type '", o.round_type,
              "'; allowed: round, adaround");

  // The FP32 checkpoint; calibration from the training split, accuracy on the test split.
  Fp32Checkpoint ckpt = load_fp32_checkpoint("ptq", a.from, a.job.model);
  const std::string& spec = ckpt.spec;
  nn::ModulePtr model = ckpt.model;
  const CheckpointData e = load_checkpoint_data(a.job, ckpt.metadata, a.from, /*with_train=*/true);
  const train::DatasetSpec& ds = e.spec;
  const train::LoadedData& data = e.data;
  const std::vector<float>& mean = e.mean;
  const std::vector<float>& std = e.std;
  data::DataLoaderOptions lo;
  lo.batch_size = a.batch_size;
  lo.transform = std::make_shared<data::Normalize>(mean, std);
  quant::CalibrationData calib;
  calib.loader = std::make_shared<data::DataLoader>(data.train, lo);
  calib.cache_key = "train split of " + ds.str() + "|limit=" + std::to_string(a.job.limit) + "|mean=" + float_list(mean) +
                    "|std=" + float_list(std);

  std::printf("PTQ of %s (%s) on %s: algo %s, W%dA%d %s weights, %lld batches of %lld from %lld train images\n",
              spec.c_str(), a.from.c_str(), data.description.c_str(), a.algo.c_str(), a.weight_bits,
              a.activation_bits, a.weight_quantize_type.c_str(),
              static_cast<long long>(a.batch_nums == 0 ? calib.loader->size() : a.batch_nums),
              static_cast<long long>(a.batch_size), static_cast<long long>(data.train->size()));
  std::fflush(stdout);
  std::string fp32_source;
  const train::EvalResult fp32 = fp32_test_figures(a.job, a.from, ckpt.metadata, e, *model, fp32_source);

  Progress progress;
  o.progress = [&](const std::string& stage, int64_t done, int64_t total) {
    const bool batches = stage == "plain forward" || stage == "calibrate" || stage == "recalibrate";
    progress.update(stage, done, total, batches ? "batches" : "layers");
    if (done == total) progress.finish();
  };
  if (a.report || a.keep_fp32 > 0)
    o.evaluate = [&](nn::Module& m) { return train::evaluate(m, data.test, mean, std).top1; };

  fs::create_directories(a.out_dir);
  const std::string int8_path = (fs::path(a.out_dir) / kInt8File).string();
  quant::QuantPostStaticResult r;
  try {
    r = quant::quant_post_static(model, spec, calib, int8_path, o);
  } catch (const Error& e) {
    progress.finish();
    QSLIM_FAIL("ptq: ", e.what());
  }
  std::vector<std::string> names;
  for (const quant::PlannedLayer& p : r.layers) names.push_back(p.name);
  std::printf("quantized %s\n", join(names).c_str());
  if (!r.kept_fp32.empty()) std::printf("kept in FP32 (most sensitive): %s\n", join(r.kept_fp32).c_str());
  if (a.report) std::printf("%s", quant::format_layer_report(r.layer_errors, r.sensitivity).c_str());
  for (const auto& b : r.bias_correction)
    if (b.corrected) std::printf("bias correction %s: mean |correction| %.3g\n", b.name.c_str(), b.mean_abs_correction);
  for (const auto& l : r.adaround)
    std::printf("adaround %s: output MSE %.4g -> %.4g, %.1f%% of weights rounded differently\n", l.name.c_str(),
                l.mse_nearest, l.mse_adaround, 100.0 * l.changed_fraction);
  if (!r.cache_file.empty())
    std::printf("calibration cache %s (%s)\n", r.cache_file.c_str(), r.cache_hit ? "reused" : "written");

  nn::ModulePtr reloaded = quant::load_converted(int8_path);
  const train::EvalResult int8 = train::evaluate(*reloaded, data.test, mean, std);
  const quant::PtqTimings& t = r.timings;
  std::printf("calibration: %lld batches (%lld samples) in %.3fs", static_cast<long long>(r.batches),
              static_cast<long long>(r.samples), t.calibrate);
  if (t.plain_forward > 0)
    std::printf("; same forwards without observers %.3fs: %.2fx", t.plain_forward, t.calibration_overhead());
  std::printf("\n");
  std::printf("stages: quantize %.3fs, data %.3fs, calibrate %.3fs, finalize %.3fs, convert %.3fs", t.quantize, t.data,
              t.calibrate, t.finalize, t.convert);
  if (t.adaround > 0) std::printf(", adaround %.3fs", t.adaround);
  if (t.bias_correction > 0) std::printf(", bias correction %.3fs", t.bias_correction);
  if (t.report > 0) std::printf(", report %.3fs", t.report);
  if (t.keep_fp32 > 0) std::printf(", keep fp32 %.3fs", t.keep_fp32);
  std::printf(", save %.3fs, total %.3fs\n", t.save, t.total);

  const auto fp32_bytes = static_cast<int64_t>(fs::file_size(a.from));
  const auto int8_bytes = static_cast<int64_t>(fs::file_size(int8_path));
  const double ratio = static_cast<double>(int8_bytes) / static_cast<double>(fp32_bytes);
  const double diff = int8.top1 - fp32.top1;
  const double rss = peak_rss_mib();
  if (a.job.json) {
    json j = {{"model", spec},
              {"dataset", ds.str()},
              {"checkpoint", a.from},
              {"algo", a.algo},
              {"kl_start", a.kl_start},
              {"weight_quantize_type", a.weight_quantize_type},
              {"weight_bits", a.weight_bits},
              {"activation_bits", a.activation_bits},
              {"batch_size", a.batch_size},
              {"batch_nums", r.batches},
              {"calibration_samples", r.samples},
              {"bias_correction", a.bias_correction},
              {"round_type", a.round_type},
              {"kept_fp32", r.kept_fp32},
              {"test_samples", int8.samples},
              {"fp32_top1", fp32.top1},
              {"fp32_top5", fp32.top5},
              {"fp32_source", fp32_source},
              {"int8_top1", int8.top1},
              {"int8_top5", int8.top5},
              {"diff_top1", diff},
              {"fp32_bytes", fp32_bytes},
              {"int8_bytes", int8_bytes},
              {"size_ratio", ratio},
              {"calibrate_seconds", t.calibrate},
              {"plain_forward_seconds", t.plain_forward},
              {"calibration_overhead", t.calibration_overhead()},
              {"stage_seconds",
               {{"quantize", t.quantize},
                {"data", t.data},
                {"calibrate", t.calibrate},
                {"finalize", t.finalize},
                {"convert", t.convert},
                {"adaround", t.adaround},
                {"bias_correction", t.bias_correction},
                {"report", t.report},
                {"keep_fp32", t.keep_fp32},
                {"save", t.save},
                {"total", t.total}}},
              {"cache_file", r.cache_file},
              {"cache_hit", r.cache_hit},
              {"peak_rss_mib", rss},
              {"int8_model", int8_path}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::printf("FP32 top-1 %.2f%%\n", fp32.top1);
  std::printf("INT8 top-1 %.2f%%  (diff vs FP32 %+.2f)\n", int8.top1, diff);
  std::printf("size: FP32 %lld bytes -> INT8 %lld bytes (%.3fx), %s\n", static_cast<long long>(fp32_bytes),
              static_cast<long long>(int8_bytes), ratio, int8_path.c_str());
  std::printf("peak RSS %.1f MiB\n", rss);
}
}  // namespace

void add_ptq_command(CLI::App& app) {
  auto a = std::make_shared<PtqArgs>();
  CLI::App* cmd = app.add_subcommand(
      "ptq", "Post-training static quantization of an FP32 checkpoint to a saved INT8 model (quant_post_static)");
  cmd->footer(
      "Calibrates on the first --batch-nums x --batch-size training images (no shuffle, no augmentation),\n"
      "normalised as in training; evaluates FP32 and the reloaded INT8 file on the test split.");
  cmd->add_option("--from", a->from, "FP32 model.safetensors written by qslim train")->required();
  cmd->add_option("--out", a->out_dir, "Directory for model_int8.safetensors")->required();
  cmd->add_option("--algo", a->algo, "Activation observer: abs_max, direct, avg, hist, KL, mse, emd")
      ->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Calibration batch size")->capture_default_str();
  cmd->add_option("--batch-nums", a->batch_nums, "Calibration batches (0: the whole training split)")
      ->capture_default_str();
  cmd->add_option("--weight-bits", a->weight_bits, "Weight bits (2..16)")->capture_default_str();
  cmd->add_option("--activation-bits", a->activation_bits, "Activation bits (2..16), may differ from weight bits")
      ->capture_default_str();
  cmd->add_option("--weight-quantize-type", a->weight_quantize_type, "channel_wise_abs_max, abs_max or mse")
      ->capture_default_str();
  cmd->add_option("--quantize-op-types", a->quantize_op_types,
                  "Comma-separated quant types or Paddle aliases (default Conv2D,DepthwiseConv2D,Linear)");
  cmd->add_flag("--is-full-quantize", a->full_quantize, "Also quantize weight-less ops (pooling, add, activations)");
  cmd->add_option("--hist-percent", a->hist_percent, "Percentile of the hist algo")->capture_default_str();
  cmd->add_option("--kl-start", a->kl_start, "Where the KL search starts: tensorrt (bin 128) or paddle (middle bin)")
      ->capture_default_str();
  cmd->add_flag("--bias-correction", a->bias_correction, "Data-driven bias correction after conversion");
  cmd->add_option("--round-type", a->round_type, "round (nearest) or adaround")->capture_default_str();
  cmd->add_option("--adaround-iters", a->adaround_iters, "AdaRound iterations per layer")->capture_default_str();
  cmd->add_flag("--report", a->report, "Per-layer SQNR/cosine/MSE and sensitivity ranking on the test split");
  cmd->add_option("--keep-fp32", a->keep_fp32, "Keep the N most sensitive layers in FP32");
  cmd->add_option("--cache-dir", a->cache_dir, "Cache the calibration batches in this directory and reuse them");
  cmd->add_flag("--measure-overhead", a->measure_overhead,
                "Also time the same forwards without observers (calibration cost ratio)");
  add_checkpoint_job_options(cmd, a->job, "Use only the first N training and test images",
                             "Also print the figures as one JSON line");
  add_fp32_reference_option(cmd, a->job);
  cmd->callback([a] { run_ptq(*a); });
}

}  // namespace qslim::tools
