// quant_post_static: PaddleSlim's post-training static quantization driver on top of PTQ.
//
//   quant::QuantPostStaticOptions o;
//   o.algo = "KL"; o.batch_size = 16; o.batch_nums = 32;
//   auto r = quant::quant_post_static(model, "resnet20", {.loader = calib_loader}, "out/model_int8.safetensors", o);
//
// Stages, each timed in the result: PTQ::quantize (Conv2D+BatchNorm2D folded) -> calibration
// (batch_nums batches in eval mode without gradients) -> finalize every observer -> float twins ->
// convert -> AdaRound (round_type "adaround") -> bias correction -> report (per-layer errors and,
// with an evaluate function, the sensitivity ranking) -> keep the N most sensitive layers in FP32
// (PTQ re-run from the float weights with those layers skipped) -> save. The output file is
// written only after every stage succeeded, atomically (<out>.tmp renamed), so a failure never
// leaves a partial or stale-new model behind.
//
// Memory: calibration streams the batches (one at a time from the loader or the cache file);
// they are held in memory only when a later stage needs them (AdaRound, bias correction, report,
// keep_fp32_layers).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataloader.h"
#include "nn/module.h"
#include "quant/adaround.h"
#include "quant/bias_correction.h"
#include "quant/layer_report.h"
#include "quant/ptq.h"

namespace qslim::quant {

// Where calibration inputs come from: a loader (its batches are fed to the model as they are, so
// put the normalisation in its transform) or a list of model-ready batches.
struct CalibrationData {
  std::shared_ptr<data::DataLoader> loader = nullptr;
  std::vector<Tensor> batches = {};
  // Identifies the data for the cache file (e.g. dataset, split, limit, normalisation); required
  // with is_use_cache_file. The batch settings are added to it.
  std::string cache_key = {};
};

// progress(stage, done, total): stage is "calibrate", "adaround", "sensitivity", ...
using PtqProgressFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

struct QuantPostStaticOptions : PtqOptions {
  // Samples per batch; the loader's batch size or each listed batch's first dim must equal it
  // (0: whatever the source gives).
  int64_t batch_size = 16;
  int64_t batch_nums = 0;  // batches to calibrate with; 0: all the source has
  bool bias_correction = false;
  std::string round_type = "round";  // "round" | "adaround"
  AdaRoundOptions adaround;
  bool is_use_cache_file = false;  // cache the calibration batches in cache_dir and reuse them
  std::string cache_dir;
  bool report = false;                         // per-layer errors (and sensitivity with `evaluate`)
  std::function<double(nn::Module&)> evaluate;  // e.g. top-1 on held-out data; for sensitivity
  int64_t keep_fp32_layers = 0;                 // keep the N most sensitive layers in FP32 (needs evaluate)
  // Also time the same calibration forwards through the float model (no observers), for the
  // calibration-cost ratio.
  bool measure_overhead = false;
  PtqProgressFn progress;
};

// Wall seconds per stage.
struct PtqTimings {
  double quantize = 0;       // BN fold, wrappers, observers
  double data = 0;           // producing calibration batches (loader or cache; excludes the forwards)
  double calibrate = 0;      // forwards with observers
  double plain_forward = 0;  // the same forwards through the float model (measure_overhead)
  double finalize = 0, convert = 0, adaround = 0, bias_correction = 0, report = 0, keep_fp32 = 0, save = 0;
  double total = 0;
  // calibrate / plain_forward; 0 without measure_overhead.
  double calibration_overhead() const { return plain_forward > 0 ? calibrate / plain_forward : 0; }
};

struct QuantPostStaticResult {
  nn::ModulePtr model;  // the converted model that was saved
  std::string model_spec;
  QuantConfig config;   // the placement the saved model was quantized with
  std::vector<PlannedLayer> layers;       // quantized layers of the saved model
  std::vector<std::string> kept_fp32;     // layers left in FP32 (keep_fp32_layers)
  int64_t batches = 0, samples = 0;       // calibration data used
  std::string cache_file;                 // with is_use_cache_file
  bool cache_hit = false;                 // batches came from an existing cache file
  std::vector<AdaRoundLayer> adaround;
  std::vector<BiasCorrectionLayer> bias_correction;
  std::vector<LayerError> layer_errors;   // report
  std::vector<LayerSensitivity> sensitivity;  // report with evaluate, or keep_fp32_layers
  double float_metric = 0;                    // evaluate() of the float model (with sensitivity)
  std::string output_path;
  PtqTimings timings;
};

// `model` (a float model that models::create_model(model_spec) rebuilds) is quantized and converted
// in place; with keep_fp32_layers the result's model is a rebuilt one. Errors name the stage and
// the offending setting: unknown algo / weight type / round_type, batch_nums larger than the data,
// an empty calibration set, a model with nothing quantizable, a cache_dir that cannot be written.
QuantPostStaticResult quant_post_static(const nn::ModulePtr& model, const std::string& model_spec,
                                        const CalibrationData& data, const std::string& output_path,
                                        const QuantPostStaticOptions& options = {});

// The same from an FP32 checkpoint written by qslim train (its metadata names the model spec).
QuantPostStaticResult quant_post_static(const std::string& checkpoint, const CalibrationData& data,
                                        const std::string& output_path, const QuantPostStaticOptions& options = {});

}  // namespace qslim::quant
