#include "quant/quant_post_static.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/calibration_cache.h"
#include "quant/float_twin.h"
#include "quant/quantized_io.h"

namespace qslim::quant {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Replays the first n batches of a loader, a list or a cache file, one batch at a time.
class BatchSource {
 public:
  BatchSource(const CalibrationData& data, const CalibrationCacheReader* cache) : data_(data), cache_(cache) {
    if (data.loader) epoch0_ = data.loader->next_epoch();
  }
  void start() {
    i_ = 0;
    if (cache_ || !data_.loader) return;
    data_.loader->set_epoch(epoch0_);
    it_ = data_.loader->begin();
  }
  Tensor next() {
    const int64_t i = i_++;
    if (cache_) return cache_->get(i);
    if (!data_.loader) return data_.batches.at(static_cast<size_t>(i));
    if (i > 0) ++it_;
    QSLIM_CHECK(it_ != data_.loader->end(), "quant_post_static: the data loader ended after ", i, " batches");
    return it_->images;
  }
  void finish() { it_ = data::DataLoader::Iterator(); }  // stops the loader's workers

 private:
  const CalibrationData& data_;
  const CalibrationCacheReader* cache_;
  int64_t epoch0_ = 0, i_ = 0;
  data::DataLoader::Iterator it_;
};

// Number of batches to use; checks the source against batch_size / batch_nums.
int64_t resolve_batches(const CalibrationData& data, const QuantPostStaticOptions& o) {
  QSLIM_CHECK(!(data.loader && !data.batches.empty()), "quant_post_static: give either a data loader or a list of ",
              "batches, not both");
  QSLIM_CHECK(o.batch_size >= 0 && o.batch_nums >= 0, "quant_post_static: batch_size (", o.batch_size,
              ") and batch_nums (", o.batch_nums, ") must be >= 0");
  int64_t available = 0;
  std::string what;
  if (data.loader) {
    const int64_t loader_batch = data.loader->options().batch_size;
    QSLIM_CHECK(o.batch_size == 0 || o.batch_size == loader_batch, "quant_post_static: batch_size ", o.batch_size,
                " but the data loader makes batches of ", loader_batch);
    available = data.loader->size();
    what = "the data loader makes " + std::to_string(available) + " batches of " + std::to_string(loader_batch) +
           " (" + std::to_string(data.loader->dataset().size()) + " samples)";
  } else {
    available = static_cast<int64_t>(data.batches.size());
    what = std::to_string(available) + " batches were given";
  }
  QSLIM_CHECK(available > 0, "quant_post_static: the calibration set is empty (", what, ")");
  QSLIM_CHECK(o.batch_nums <= available, "quant_post_static: batch_nums ", o.batch_nums,
              " is larger than the calibration data: ", what);
  return o.batch_nums == 0 ? available : o.batch_nums;
}

void check_batch(const Tensor& b, int64_t i, const CalibrationData& data, const QuantPostStaticOptions& o) {
  QSLIM_CHECK(b.defined() && b.dtype() == DType::F32 && b.dim() >= 1, "quant_post_static: calibration batch ", i,
              " must be an f32 tensor with a batch dimension, got ",
              b.defined() ? dtype_name(b.dtype()) + std::string(" ") + shape_str(b.shape()) : std::string("none"));
  QSLIM_CHECK(b.size(0) > 0, "quant_post_static: calibration batch ", i, " is empty ", shape_str(b.shape()));
  QSLIM_CHECK(data.loader || o.batch_size == 0 || b.size(0) == o.batch_size, "quant_post_static: calibration batch ",
              i, " holds ", b.size(0), " samples but batch_size is ", o.batch_size);
}

void validate(const QuantPostStaticOptions& o, const std::string& model_spec, const CalibrationData& data,
              const std::string& output_path) {
  ptq_config(o);  // algo, weight type, bits, op types
  QSLIM_CHECK(o.round_type == "round" || o.round_type == "adaround", "quant_post_static: unknown round_type '",
              o.round_type, "'; allowed: round, adaround");
  QSLIM_CHECK(!output_path.empty(), "quant_post_static: no output path");
  QSLIM_CHECK(o.keep_fp32_layers >= 0, "quant_post_static: keep_fp32_layers must be >= 0, got ", o.keep_fp32_layers);
  QSLIM_CHECK(o.keep_fp32_layers == 0 || o.evaluate, "quant_post_static: keep_fp32_layers (", o.keep_fp32_layers,
              ") ranks layers by accuracy: it needs an evaluate function");
  QSLIM_CHECK(!model_spec.empty(), "quant_post_static: no model spec (save_converted records it to rebuild the model)");
  if (o.is_use_cache_file) {
    QSLIM_CHECK(!o.cache_dir.empty(), "quant_post_static: is_use_cache_file needs a cache_dir");
    QSLIM_CHECK(!data.cache_key.empty(), "quant_post_static: is_use_cache_file needs CalibrationData::cache_key ",
                "(what data the batches come from, so a cache of other data is never reused)");
  }
}

}  // namespace

QuantPostStaticResult quant_post_static(const nn::ModulePtr& model, const std::string& model_spec,
                                        const CalibrationData& data, const std::string& output_path,
                                        const QuantPostStaticOptions& o) {
  const auto t_total = Clock::now();
  QSLIM_CHECK(model != nullptr, "quant_post_static: null model");
  validate(o, model_spec, data, output_path);
  const int64_t n = resolve_batches(data, o);
  auto progress = [&](const std::string& stage, int64_t done, int64_t total) {
    if (o.progress) o.progress(stage, done, total);
  };

  QuantPostStaticResult r;
  r.model_spec = model_spec;
  r.output_path = output_path;
  r.batches = n;
  PtqTimings& t = r.timings;

  // The cache: reuse a file of the same data and batch settings, else write one while calibrating.
  CalibrationCacheReader reader;
  std::optional<CalibrationCacheWriter> writer;
  if (o.is_use_cache_file) {
    const std::string key =
        data.cache_key + "|batch_size=" + std::to_string(o.batch_size) + "|batch_nums=" + std::to_string(n);
    r.cache_hit = reader.open(o.cache_dir, key) && reader.size() == n;
    if (!r.cache_hit) {
      try {
        writer.emplace(o.cache_dir, key, n);
      } catch (const Error& e) {
        QSLIM_FAIL("quant_post_static: is_use_cache_file: ", e.what());
      }
    }
    r.cache_file = calibration_cache_path(o.cache_dir, key);
  }
  BatchSource source(data, r.cache_hit ? &reader : nullptr);

  const bool needs_batches = o.round_type == "adaround" || o.bias_correction || o.report || o.keep_fp32_layers > 0;
  const bool needs_twins = needs_batches;
  nn::NamedTensors float_state;  // for keep_fp32_layers
  if (o.keep_fp32_layers > 0) {
    NoGradGuard no_grad;
    for (const auto& [name, v] : model->state_dict()) float_state.emplace_back(name, v.clone());
  }

  if (o.measure_overhead) {
    NoGradGuard no_grad;
    model->eval();
    source.start();
    for (int64_t i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      Tensor b = source.next();
      t.data += since(t0);
      check_batch(b, i, data, o);
      if (i == 0) (*model)(b);  // warm-up (allocator, scratch buffers), as the calibration pass gets
      t0 = Clock::now();
      (*model)(b);
      t.plain_forward += since(t0);
      progress("plain forward", i + 1, n);
    }
    source.finish();
  }

  const QuantConfig config = ptq_config(o);
  PTQ ptq(config, o);
  auto t0 = Clock::now();
  r.layers = ptq.quantize(*model);
  t.quantize = since(t0);
  r.config = config;

  std::vector<Tensor> kept;
  source.start();
  for (int64_t i = 0; i < n; ++i) {
    t0 = Clock::now();
    Tensor b = source.next();
    check_batch(b, i, data, o);
    if (writer) writer->add(b);
    if (needs_batches) kept.push_back(b);
    r.samples += b.size(0);
    t.data += since(t0);
    t0 = Clock::now();
    ptq.calibrate(*model, b);
    t.calibrate += since(t0);
    progress("calibrate", i + 1, n);
  }
  source.finish();
  if (writer) writer->commit();

  // Finalize .. bias correction on a quantized, calibrated model.
  auto finish = [&](const PTQ& p, nn::Module& m) {
    auto t1 = Clock::now();
    p.finalize(m);
    t.finalize += since(t1);
    t1 = Clock::now();
    FloatTwins twins;
    if (needs_twins) twins = float_twins(m);
    quant::convert(m);
    t.convert += since(t1);
    if (o.round_type == "adaround") {
      t1 = Clock::now();
      r.adaround = adaround(m, twins, kept, o.adaround, [&](size_t i, size_t count, const std::string&) {
        progress("adaround", static_cast<int64_t>(i), static_cast<int64_t>(count));
      });
      progress("adaround", static_cast<int64_t>(r.adaround.size()), static_cast<int64_t>(r.adaround.size()));
      t.adaround += since(t1);
    }
    if (o.bias_correction) {
      t1 = Clock::now();
      r.bias_correction = bias_correction(m, twins, kept);
      t.bias_correction += since(t1);
    }
    return twins;
  };
  FloatTwins twins = finish(ptq, *model);
  r.model = model;

  if (o.report || o.keep_fp32_layers > 0) {
    t0 = Clock::now();
    if (o.report) r.layer_errors = layer_report(*model, twins, kept.front());
    if (o.evaluate) {
      progress("sensitivity", 0, static_cast<int64_t>(r.layers.size()));
      r.sensitivity = sensitivity_ranking(*model, twins, o.evaluate, &r.float_metric);
      progress("sensitivity", static_cast<int64_t>(r.layers.size()), static_cast<int64_t>(r.layers.size()));
    }
    t.report = since(t0);
  }

  if (o.keep_fp32_layers > 0) {
    t0 = Clock::now();
    QSLIM_CHECK(o.keep_fp32_layers < static_cast<int64_t>(r.sensitivity.size()), "quant_post_static: keep_fp32_layers ",
                o.keep_fp32_layers, " would leave nothing quantized (", r.sensitivity.size(), " quantized layers)");
    nn::ModulePtr fresh = models::create_model(model_spec);
    fresh->load_state_dict(float_state, true);
    QuantConfig kept_config = ptq_config(o);
    for (int64_t i = 0; i < o.keep_fp32_layers; ++i) {
      r.kept_fp32.push_back(r.sensitivity[static_cast<size_t>(i)].name);
      kept_config.skip(fresh->get_submodule(r.kept_fp32.back()).get());
    }
    PTQ again(kept_config, o);
    r.layers = again.quantize(*fresh);
    for (size_t i = 0; i < kept.size(); ++i) {
      again.calibrate(*fresh, kept[i]);
      progress("recalibrate", static_cast<int64_t>(i + 1), static_cast<int64_t>(kept.size()));
    }
    r.adaround.clear();
    r.bias_correction.clear();
    finish(again, *fresh);
    r.model = fresh;
    t.keep_fp32 = since(t0);
  }

  t0 = Clock::now();
  const fs::path parent = fs::path(output_path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    QSLIM_CHECK(!ec, "quant_post_static: cannot create the output directory ", parent.string(), ": ", ec.message());
  }
  save_converted(output_path, *r.model, r.config, model_spec);
  t.save = since(t0);
  t.total = since(t_total);
  return r;
}

QuantPostStaticResult quant_post_static(const std::string& checkpoint, const CalibrationData& data,
                                        const std::string& output_path, const QuantPostStaticOptions& options) {
  QSLIM_CHECK(fs::exists(checkpoint), "quant_post_static: checkpoint ", checkpoint, " does not exist");
  nn::LoadedTensors loaded = nn::load_tensors(checkpoint);
  auto meta = [&](const char* key) {
    auto it = loaded.metadata.find(key);
    return it == loaded.metadata.end() ? std::string() : it->second;
  };
  QSLIM_CHECK(meta("format") != kConvertedFormat, "quant_post_static: ", checkpoint, " is already a converted '",
              kConvertedFormat, "' model; pass the FP32 checkpoint");
  const std::string spec = meta("model");
  QSLIM_CHECK(!spec.empty(), "quant_post_static: ", checkpoint, " has no 'model' metadata naming its network");
  nn::ModulePtr model = models::create_model(spec);
  try {
    model->load_state_dict(loaded.tensors, true);
  } catch (const Error& e) {
    QSLIM_FAIL("quant_post_static: ", checkpoint, " does not fit model '", spec, "': ", e.what());
  }
  return quant_post_static(model, spec, data, output_path, options);
}

}  // namespace qslim::quant
