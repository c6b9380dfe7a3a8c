#include "quant/layer_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "autograd/grad_mode.h"
#include "quant/layer_capture.h"

namespace qslim::quant {

namespace {

struct ErrorSums {
  double ff = 0, qq = 0, fq = 0, ee = 0;
  int64_t n = 0;

  void add(const Tensor& yf, const Tensor& yq) {
    const Tensor f = yf.to(DType::F64).contiguous(), q = yq.to(DType::F64).contiguous();
    const double *pf = f.data<double>(), *pq = q.data<double>();
    for (int64_t i = 0; i < f.numel(); ++i) {
      ff += pf[i] * pf[i];
      qq += pq[i] * pq[i];
      fq += pf[i] * pq[i];
      ee += (pf[i] - pq[i]) * (pf[i] - pq[i]);
    }
    n += f.numel();
  }
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::vector<LayerError> layer_report(nn::Module& converted, const FloatTwins& twins, const Tensor& inputs) {
  check_batches({inputs}, "layer_report");
  const std::vector<ConvertedEntry> layers = converted_layers(converted, twins, "layer_report", false);
  EvalScope eval(converted);
  NoGradGuard no_grad;

  CallRecorder float_rec, quant_rec;
  for (size_t i = 0; i < layers.size(); ++i) {
    float_rec.watch(twins.at(layers[i].name).get(), i, false, true);
    quant_rec.watch(layers[i].layer.get(), i, false, true);
  }
  {
    TwinSwap all_float(converted, layers, twins);
    nn::ScopedCallObserver scope(&float_rec);
    converted(inputs);
  }
  {
    nn::ScopedCallObserver scope(&quant_rec);
    converted(inputs);
  }

  std::vector<LayerError> out;
  std::string never;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto &yf = float_rec.outputs(i), &yq = quant_rec.outputs(i);
    if (yq.empty()) {
      never += (never.empty() ? "'" : ", '") + layers[i].name + "'";
      continue;
    }
    QSLIM_CHECK(yf.size() == yq.size(), "layer_report: layer '", layers[i].name, "' was called ", yq.size(),
                " times in the converted model but its twin ", yf.size(), " times in the float model");
    ErrorSums s;
    for (size_t k = 0; k < yq.size(); ++k) {
      QSLIM_CHECK(yf[k].shape() == yq[k].shape(), "layer_report: layer '", layers[i].name, "' outputs ",
                  shape_str(yq[k].shape()), " but its twin outputs ", shape_str(yf[k].shape()));
      s.add(yf[k], yq[k]);
    }
    LayerError e;
    e.name = layers[i].name;
    e.type = layers[i].layer->source_type();
    e.sqnr_db = s.ee == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(s.ff / s.ee);
    e.cosine = (s.ff == 0 && s.qq == 0) ? 1.0 : (s.ff == 0 || s.qq == 0) ? 0.0 : s.fq / std::sqrt(s.ff * s.qq);
    e.mse = s.n ? s.ee / static_cast<double>(s.n) : 0.0;
    out.push_back(e);
  }
  QSLIM_CHECK(never.empty(), "layer_report: the model's forward on ", shape_str(inputs.shape()),
              " never calls converted layer(s) ", never);
  std::stable_sort(out.begin(), out.end(), [](const LayerError& a, const LayerError& b) { return a.sqnr_db < b.sqnr_db; });
  return out;
}

std::vector<LayerSensitivity> sensitivity_ranking(nn::Module& converted, const FloatTwins& twins,
                                                  const std::function<double(nn::Module&)>& evaluate,
                                                  double* float_metric) {
  QSLIM_CHECK(static_cast<bool>(evaluate), "sensitivity_ranking: no evaluate function given");
  const std::vector<ConvertedEntry> layers = converted_layers(converted, twins, "sensitivity_ranking", false);
  EvalScope eval(converted);
  NoGradGuard no_grad;
  double base = 0;
  {
    TwinSwap all_float(converted, layers, twins);
    base = evaluate(converted);
  }
  if (float_metric) *float_metric = base;
  std::vector<LayerSensitivity> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    TwinSwap others_float(converted, layers, twins, static_cast<int64_t>(i));
    LayerSensitivity s;
    s.name = layers[i].name;
    s.metric = evaluate(converted);
    s.drop = base - s.metric;
    out.push_back(s);
  }
  std::stable_sort(out.begin(), out.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) { return a.drop > b.drop; });
  return out;
}

std::string format_layer_report(const std::vector<LayerError>& errors,
                                const std::vector<LayerSensitivity>& sensitivity) {
  std::string s;
  if (!errors.empty()) {
    s += "| layer | type | SQNR (dB) | cosine | MSE |\n|---|---|---:|---:|---:|\n";
    for (const LayerError& e : errors)
      s += "| " + e.name + " | " + e.type + " | " + (std::isinf(e.sqnr_db) ? std::string("inf") : fmt("%.2f", e.sqnr_db)) +
           " | " + fmt("%.6f", e.cosine) + " | " + fmt("%.3e", e.mse) + " |\n";
  }
  if (!sensitivity.empty()) {
    if (!s.empty()) s += "\n";
    s += "| rank | layer | metric (only this layer quantized) | drop |\n|---:|---|---:|---:|\n";
    for (size_t i = 0; i < sensitivity.size(); ++i)
      s += "| " + std::to_string(i + 1) + " | " + sensitivity[i].name + " | " + fmt("%.2f", sensitivity[i].metric) +
           " | " + fmt("%+.2f", sensitivity[i].drop) + " |\n";
  }
  return s;
}

}  // namespace qslim::quant
