// AdaRound (Nagel et al. 2020, QUANT_SPEC.md §5): learns, per weight, whether to round down or up.
// W_soft = s * clamp(floor(W / s) + h(V), Qn, Qp), h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma,
// 0, 1), zeta = 1.1, gamma = -0.1, V initialised so h(V) equals the fractional part of W / s.
// Loss = ||twin(x_fp) - layer_soft(x_q)||^2 / positions + lambda * sum(1 - |2h - 1|^beta), where
// positions is the number of output vectors (N*H*W for a conv, N for a linear; the squared error is
// summed over output channels, as in the reference implementations, so lambda = 0.01 means what it
// does there); beta is annealed linearly from beta_start to beta_end after a warm-up with the
// regulariser off; Adam on V only (the gradient reaches V through autograd). The final rounding is
// binary: floor(W / s) + (h >= 0.5), written back as the converted layer's integer weight. Layers
// are processed in execution order; x_q is the layer's input in the (partly rounded) converted
// model, x_fp the twin model's input (all earlier layers float). W / s is evaluated as W * (1/s) in
// f32, exactly as quantize() does, so "nearest" is the integer convert stored.
//
// Memory: one layer at a time, its inputs and float outputs for every calibration sample are held
// in memory: samples * (input + output elements per sample) * 4 bytes (resnet20 at 28x28, 512
// samples: under 30 MB).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/converted_layers.h"
#include "quant/float_twin.h"

namespace qslim::quant {

struct AdaRoundOptions {
  int64_t iterations = 1000;  // per layer
  int64_t batch_size = 32;    // samples per iteration, drawn from the cached layer inputs
  double lambda = 0.01;
  double beta_start = 20, beta_end = 2;
  double warmup = 0.2;  // fraction of iterations without the regulariser
  double lr = 1e-2;
  uint64_t seed = 1;
};

struct AdaRoundLayer {
  std::string name;
  double mse_nearest = 0;       // layer output MSE (per element) against the target with round-to-nearest weights
  double mse_adaround = 0;      // same with the learned rounding
  double changed_fraction = 0;  // weights rounded differently from nearest
  double seconds = 0;           // wall time of this layer (capture + optimisation)
};

// Rewrites the integer weights of every ConvertedConv2D / ConvertedLinear in `converted`.
// progress(i, n, name) is called before layer i of n. Throws like bias_correction.
std::vector<AdaRoundLayer> adaround(nn::Module& converted, const FloatTwins& twins, const std::vector<Tensor>& batches,
                                    const AdaRoundOptions& options = {},
                                    const std::function<void(size_t, size_t, const std::string&)>& progress = {});

// AdaRound of one converted layer: `float_weight` is the weight its integers were quantized from
// (with the layer's steps), `inputs` [N, ...] the layer's inputs (unquantized; the layer's frozen
// input quantization is applied), `targets` [N, ...] the outputs to reconstruct. Rewrites the
// layer's integer weight; returns the errors on all N samples (name left empty).
AdaRoundLayer adaround_layer(ConvertedWeightLayer& layer, const Tensor& float_weight, const Tensor& inputs,
                             const Tensor& targets, const AdaRoundOptions& options = {});

// h(V) = clamp(sigmoid(V) * 1.2 - 0.1, 0, 1), differentiable in V (f32/f64).
Tensor rectified_sigmoid(const Tensor& v);
// The V with h(V) = frac for frac in [0, 1) (not differentiable).
Tensor rectified_sigmoid_inverse(const Tensor& frac);
// sum(1 - |2h - 1|^beta), differentiable in h.
Tensor adaround_regularizer(const Tensor& h, double beta);

}  // namespace qslim::quant
