#include "quant/bias_correction.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops_arith.h"
#include "core/factory.h"
#include "quant/layer_capture.h"

namespace qslim::quant {

std::vector<BiasCorrectionLayer> bias_correction(nn::Module& converted, const FloatTwins& twins,
                                                 const std::vector<Tensor>& batches) {
  check_batches(batches, "bias_correction");
  std::vector<ConvertedEntry> layers = converted_layers(converted, twins, "bias_correction", true);
  EvalScope eval(converted);
  NoGradGuard no_grad;
  layers = execution_order(converted, layers, batches[0], "bias_correction");

  std::vector<BiasCorrectionLayer> out;
  for (const ConvertedEntry& e : layers) {
    auto& layer = static_cast<ConvertedWeightLayer&>(*e.layer);
    nn::Module& twin = *twins.at(e.name);
    EvalScope twin_eval(twin);
    std::vector<double> sums;
    int64_t count = 0;
    for (const Tensor& batch : batches) {
      CallRecorder rec;
      rec.watch(e.layer.get(), 0, true, false);
      {
        nn::ScopedCallObserver scope(&rec);
        converted(batch);
      }
      // The layer's own input inside the converted model, so earlier corrections are seen.
      for (const Tensor& x : rec.inputs(0)) {
        const Tensor yq = layer.forward(x), yf = twin.forward(x);
        QSLIM_CHECK(yq.shape() == yf.shape(), "bias_correction: layer '", e.name, "' outputs ", shape_str(yq.shape()),
                    " but its twin (", twin.type_name(), ") outputs ", shape_str(yf.shape()));
        int64_t n = 0;
        const std::vector<double> s = channel_sums(yf.to(DType::F64) - yq.to(DType::F64),
                                                   output_channel_axis(layer, yq), &n);
        if (sums.empty()) sums.assign(s.size(), 0.0);
        for (size_t c = 0; c < s.size(); ++c) sums[c] += s[c];
        count += n;
      }
    }
    BiasCorrectionLayer r;
    r.name = e.name;
    std::vector<float> correction(sums.size());
    for (size_t c = 0; c < sums.size(); ++c) {
      correction[c] = static_cast<float>(sums[c] / static_cast<double>(count));
      r.mean_abs_correction += std::abs(sums[c] / static_cast<double>(count));
    }
    if (!sums.empty()) r.mean_abs_correction /= static_cast<double>(sums.size());
    if (layer.has_bias()) {
      const Tensor bias = layer.buffer("bias");
      const Tensor delta = from_vector<float>(correction, {static_cast<int64_t>(correction.size())});
      QSLIM_CHECK(delta.shape() == bias.shape(), "bias_correction: layer '", e.name, "' has bias ",
                  shape_str(bias.shape()), " but its output has ", correction.size(), " channels");
      layer.set_bias(bias + delta);
      r.corrected = true;
    }
    out.push_back(r);
  }
  return out;
}

std::vector<BiasCorrectionLayer> weight_bias_correction(nn::Module& converted, const FloatTwins& twins) {
  const std::vector<ConvertedEntry> layers = converted_layers(converted, twins, "weight_bias_correction", true);
  std::vector<BiasCorrectionLayer> out;
  for (const ConvertedEntry& e : layers) {
    auto& layer = static_cast<ConvertedWeightLayer&>(*e.layer);
    const nn::Module& twin = *twins.at(e.name);
    QSLIM_CHECK(twin.has_param("weight") && twin.param("weight").shape() == layer.buffer("weight").shape(),
                "weight_bias_correction: the twin of '", e.name, "' (", twin.type_name(),
                ") has no weight of the layer's shape ", shape_str(layer.buffer("weight").shape()));
    const QuantParams wp = layer.weight_params();
    const std::vector<double> w = twin.param("weight").to_vector<double>();
    const std::vector<double> wq = layer.dequantized_weight().to_vector<double>();
    const size_t groups = wp.per_channel() ? static_cast<size_t>(layer.buffer("weight").size(0)) : 1;
    const size_t per = w.size() / groups;
    std::vector<float> corrected(w.size());
    BiasCorrectionLayer r;
    r.name = e.name;
    r.corrected = true;
    for (size_t g = 0; g < groups; ++g) {
      double mw = 0, mq = 0;
      for (size_t i = g * per; i < (g + 1) * per; ++i) mw += w[i], mq += wq[i];
      mw /= static_cast<double>(per);
      mq /= static_cast<double>(per);
      double vw = 0, vq = 0;
      for (size_t i = g * per; i < (g + 1) * per; ++i) vw += (w[i] - mw) * (w[i] - mw), vq += (wq[i] - mq) * (wq[i] - mq);
      const double stretch = std::sqrt(vw / static_cast<double>(per)) / (std::sqrt(vq / static_cast<double>(per)) + 1e-8);
      const double shift = mw - mq;  // mean(W - Wq)
      for (size_t i = g * per; i < (g + 1) * per; ++i) corrected[i] = static_cast<float>((wq[i] + shift) * stretch);
      r.mean_abs_correction += std::abs(shift) / static_cast<double>(groups);
    }
    layer.set_weight(from_vector<float>(corrected, layer.buffer("weight").shape()), wp);
    out.push_back(r);
  }
  return out;
}

}  // namespace qslim::quant
