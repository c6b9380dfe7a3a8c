#include "quant/adaround.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops_activation.h"
#include "autograd/ops_arith.h"
#include "autograd/ops_conv.h"
#include "autograd/ops_index.h"
#include "autograd/ops_linalg.h"
#include "autograd/ops_reduce.h"
#include "core/factory.h"
#include "core/random.h"
#include "nn/optim/adam.h"
#include "quant/fake_quant.h"
#include "quant/layer_capture.h"

namespace qslim::quant {

namespace {

constexpr double kZeta = 1.1, kGamma = -0.1;

void check_options(const AdaRoundOptions& o) {
  QSLIM_CHECK(o.iterations >= 1, "adaround: iterations must be >= 1, got ", o.iterations);
  QSLIM_CHECK(o.batch_size >= 1, "adaround: batch_size must be >= 1, got ", o.batch_size);
  QSLIM_CHECK(o.lambda >= 0 && std::isfinite(o.lambda), "adaround: lambda must be finite and >= 0, got ", o.lambda);
  QSLIM_CHECK(o.beta_end >= 1 && o.beta_start >= o.beta_end && std::isfinite(o.beta_start),
              "adaround: need beta_start >= beta_end >= 1, got beta_start=", o.beta_start, ", beta_end=", o.beta_end);
  QSLIM_CHECK(o.warmup >= 0 && o.warmup < 1, "adaround: warmup is a fraction in [0, 1), got ", o.warmup);
  QSLIM_CHECK(o.lr > 0 && std::isfinite(o.lr), "adaround: lr must be positive, got ", o.lr);
}

// The layer's forward with weight w on already-quantized inputs xq.
Tensor layer_forward(const ConvertedWeightLayer& layer, const Tensor& xq, const Tensor& w) {
  const Tensor bias = layer.has_bias() ? layer.buffer("bias") : Tensor();
  if (const auto* c = dynamic_cast<const ConvertedConv2D*>(&layer)) return conv2d(xq, w, bias, c->conv_params());
  return linear(xq, w, bias);
}

double mse(const Tensor& a, const Tensor& b) {
  const Tensor d = a.to(DType::F64) - b.to(DType::F64);
  return sum(d * d).item() / static_cast<double>(std::max<int64_t>(d.numel(), 1));
}

}  // namespace

Tensor rectified_sigmoid(const Tensor& v) { return clamp(sigmoid(v) * (kZeta - kGamma) + kGamma, 0.0, 1.0); }

Tensor rectified_sigmoid_inverse(const Tensor& frac) {
  QSLIM_CHECK(frac.is_floating_point(), "rectified_sigmoid_inverse: expected a floating tensor, got ",
              dtype_name(frac.dtype()));
  NoGradGuard no_grad;
  // sigmoid(V) = (frac - gamma) / (zeta - gamma)  =>  V = -log((zeta - gamma) / (frac - gamma) - 1).
  std::vector<double> f = frac.to_vector<double>();
  for (double& x : f) {
    QSLIM_CHECK(x >= 0 && x < 1, "rectified_sigmoid_inverse: fractions must lie in [0, 1), got ", x);
    x = -std::log((kZeta - kGamma) / (x - kGamma) - 1.0);
  }
  return from_vector<double>(f, frac.shape()).to(frac.dtype());
}

Tensor adaround_regularizer(const Tensor& h, double beta) {
  return sum(1.0 - pow(abs(h * 2.0 - 1.0), beta));
}

AdaRoundLayer adaround_layer(ConvertedWeightLayer& layer, const Tensor& float_weight, const Tensor& inputs,
                             const Tensor& targets, const AdaRoundOptions& options) {
  check_options(options);
  const Tensor qw = layer.buffer("weight");
  QSLIM_CHECK(float_weight.defined() && float_weight.shape() == qw.shape(), "adaround: float weight ",
              float_weight.defined() ? shape_str(float_weight.shape()) : std::string("<undefined>"),
              " does not match the layer's weight ", shape_str(qw.shape()));
  QSLIM_CHECK(inputs.defined() && targets.defined() && inputs.dim() >= 1 && targets.dim() >= 1 &&
                  inputs.size(0) == targets.size(0) && inputs.size(0) > 0,
              "adaround: inputs and targets need the same non-zero number of samples (dim 0), got ",
              inputs.defined() ? shape_str(inputs.shape()) : "<undefined>", " and ",
              targets.defined() ? shape_str(targets.shape()) : "<undefined>");

  const QuantParams wp = layer.weight_params();
  const QuantGrid& grid = wp.grid;
  const int64_t cout = qw.size(0), per = qw.numel() / cout;
  const std::vector<float> steps = wp.scale.to_vector<float>();
  const std::vector<float> w = float_weight.detach().to(DType::F32).to_vector<float>();
  const std::vector<int64_t> nearest = qw.to_vector<int64_t>();

  // floor(W * (1/s)) and the fractional part that initialises h(V).
  std::vector<float> wfloor(w.size()), frac(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const float s = steps[wp.per_channel() ? i / static_cast<size_t>(per) : 0];
    const float v = w[i] * (1.0f / s);
    wfloor[i] = std::floor(v);
    frac[i] = std::clamp(v - wfloor[i], 0.0f, std::nextafter(1.0f, 0.0f));
  }
  const Shape wshape = qw.shape();
  Shape sshape(wshape.size(), 1);
  if (wp.per_channel()) sshape[0] = cout;
  const Tensor step = wp.scale.to(DType::F32).reshape(sshape);
  const Tensor floor_t = from_vector<float>(wfloor, wshape);
  Tensor V = rectified_sigmoid_inverse(from_vector<float>(frac, wshape));
  V.set_requires_grad();

  Tensor xq, target;
  {
    NoGradGuard no_grad;
    xq = fake_quantize(inputs.detach().to(DType::F32), layer.input_params());
    target = targets.detach().to(DType::F32).contiguous();
  }
  const int64_t n = xq.size(0);
  const int64_t batch = std::min(options.batch_size, n);

  optim::Adam adam({V}, optim::GroupOptions{.lr = options.lr});
  Generator gen(options.seed);
  const int64_t warm = static_cast<int64_t>(options.warmup * static_cast<double>(options.iterations));
  const double qmin = static_cast<double>(grid.qmin()), qmax = static_cast<double>(grid.qmax());
  for (int64_t it = 0; it < options.iterations; ++it) {
    Tensor xb = xq, tb = target;
    if (batch < n) {
      const Tensor idx = randperm(n, &gen).narrow(0, 0, batch).contiguous();
      xb = index_select(xq, 0, idx);
      tb = index_select(target, 0, idx);
    }
    adam.zero_grad();
    const Tensor h = rectified_sigmoid(V);
    const Tensor w_soft = clamp(floor_t + h, qmin, qmax) * step;
    const Tensor y = layer_forward(layer, xb, w_soft);
    QSLIM_CHECK(y.shape() == tb.shape(), "adaround: the layer outputs ", shape_str(y.shape()), " but the targets are ",
                shape_str(tb.shape()));
    const Tensor d = y - tb;
    // Squared error summed over output channels, averaged over output positions.
    Tensor loss = sum(d * d) * (static_cast<double>(cout) / static_cast<double>(d.numel()));
    if (it >= warm && options.lambda > 0) {
      const double rel = static_cast<double>(it - warm) / static_cast<double>(std::max<int64_t>(options.iterations - warm, 1));
      const double beta = options.beta_end + (options.beta_start - options.beta_end) * std::max(0.0, 1.0 - rel);
      loss = loss + adaround_regularizer(h, beta) * options.lambda;
    }
    loss.backward();
    adam.step();
  }

  // Binary rounding: floor + (h >= 0.5), clamped to the grid.
  std::vector<float> hv;
  {
    NoGradGuard no_grad;
    hv = rectified_sigmoid(V.detach()).to_vector<float>();
  }
  std::vector<float> dq(w.size());
  int64_t changed = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double q = std::clamp<double>(wfloor[i] + (hv[i] >= 0.5f ? 1.0 : 0.0), qmin, qmax);
    changed += static_cast<int64_t>(q) != nearest[i];
    dq[i] = static_cast<float>(q) * steps[wp.per_channel() ? i / static_cast<size_t>(per) : 0];
  }

  AdaRoundLayer r;
  NoGradGuard no_grad;
  r.mse_nearest = mse(layer_forward(layer, xq, layer.dequantized_weight()), target);
  layer.set_weight(from_vector<float>(dq, wshape), wp);
  r.mse_adaround = mse(layer_forward(layer, xq, layer.dequantized_weight()), target);
  r.changed_fraction = static_cast<double>(changed) / static_cast<double>(std::max<size_t>(w.size(), 1));
  return r;
}

std::vector<AdaRoundLayer> adaround(nn::Module& converted, const FloatTwins& twins, const std::vector<Tensor>& batches,
                                    const AdaRoundOptions& options,
                                    const std::function<void(size_t, size_t, const std::string&)>& progress) {
  check_options(options);
  check_batches(batches, "adaround");
  std::vector<ConvertedEntry> layers = converted_layers(converted, twins, "adaround", true);
  // The float model swaps every converted layer, weight-less ops included.
  const std::vector<ConvertedEntry> all_layers = converted_layers(converted, twins, "adaround", false);
  EvalScope eval(converted);
  layers = execution_order(converted, layers, batches[0], "adaround");

  std::vector<AdaRoundLayer> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const ConvertedEntry& e = layers[i];
    if (progress) progress(i, layers.size(), e.name);
    const auto t0 = std::chrono::steady_clock::now();
    const nn::ModulePtr& twin = twins.at(e.name);
    QSLIM_CHECK(twin->has_param("weight"), "adaround: the twin of '", e.name, "' (", twin->type_name(),
                ") has no weight");
    Tensor x, y;
    {
      NoGradGuard no_grad;
      CallRecorder rec;
      rec.watch(e.layer.get(), 0, true, false);
      rec.watch(twin.get(), 1, false, true);
      {
        nn::ScopedCallObserver scope(&rec);
        for (const Tensor& b : batches) converted(b);  // x_q: earlier layers already rounded
        TwinSwap all_float(converted, all_layers, twins);
        for (const Tensor& b : batches) converted(b);  // twin(x_fp)
      }
      QSLIM_CHECK(rec.inputs(0).size() == rec.outputs(1).size(), "adaround: layer '", e.name, "' was called ",
                  rec.inputs(0).size(), " times in the converted model but its twin ", rec.outputs(1).size(),
                  " times in the float model");
      x = cat(rec.inputs(0), 0);
      y = cat(rec.outputs(1), 0);
    }
    AdaRoundOptions o = options;
    o.seed = options.seed + i;
    AdaRoundLayer r = adaround_layer(static_cast<ConvertedWeightLayer&>(*e.layer), twin->param("weight"), x, y, o);
    r.name = e.name;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.push_back(r);
  }
  return out;
}

}  // namespace qslim::quant
