// Quantization ops (QUANT_SPEC.md §1-3). The differentiable ones record autograd nodes; all run
// one fused, vectorised pass over contiguous data (parallel for large tensors), in f32 or f64.
//
// Conventions shared by every op here:
//  - `axis` == -1 quantizes per tensor (one scale); axis >= 0 gives one scale per index of that
//    axis (0 for conv weights [out, in/g, kh, kw] and linear weights [out, in]).
//  - x / s is evaluated as x * (1/s) in x's dtype (as PyTorch does), identically in every op, so
//    quantize, dequantize and fake_quantize agree bit for bit.
//  - Step sizes below kScaleFloor are raised to it (an all-zero tensor stays finite); negative or
//    non-finite steps are errors.
#pragma once
#include <optional>

#include "core/tensor.h"
#include "quant/quant_grid.h"
#include "quant/quant_params.h"

namespace qslim::quant {

// y = (clamp(round(x/s) + z, qmin, qmax) - z) * s, same shape and dtype as x (f32 or f64).
// scale: floating [1] or [C]; zero_point: i32 of the same shape, or undefined for 0.
// Backward (straight-through): Clipped passes dy where qmin <= round(x/s)+z <= qmax, else 0;
// Identity passes dy everywhere. scale and zero_point receive no gradient.
Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                     const QuantGrid& grid, Rounding rounding = Rounding::HalfEven, SteMode ste = SteMode::Clipped);
Tensor fake_quantize(const Tensor& x, const QuantParams& params, SteMode ste = SteMode::Clipped);

// q = clamp(round(x/s) + z, qmin, qmax) as integers of params.grid.storage_dtype() (i8/u8/i16/i32).
// Not differentiable.
Tensor quantize(const Tensor& x, const QuantParams& params);
// (q - z) * s as f32, for any integer q. dequantize(quantize(x, p), p) equals fake_quantize(x, p)
// exactly for f32 x.
Tensor dequantize(const Tensor& q, const QuantParams& params);

// PACT's learnable clip: clamp(x, -alpha, alpha) (two_sided) or clamp(x, 0, alpha).
// alpha: one positive element of x's dtype. dy/dx = 1 inside [lo, alpha] (edges included), 0
// outside; dy/dalpha = +1 where x > alpha, -1 where x < -alpha (two-sided only), 0 inside.
Tensor pact_clip(const Tensor& x, const Tensor& alpha, bool two_sided = true);

// LSQ / LSQ+: v = (x - beta)/s, y = clamp(round(v), qmin, qmax) * s + beta.
// step: [1] or [C] (C = x.shape[axis]), x's dtype; beta: same shape, or undefined for 0 (no gradient).
// Gradients (QUANT_SPEC §3), with in = qmin <= v <= qmax:
//   dx = dy * in;  ds = g * sum(dy * (in ? round(v) - v : (v < qmin ? qmin : qmax)));
//   dbeta = g * sum(dy * !in);  sums per channel when axis >= 0.
// grad_scale g defaults to lsq_grad_scale(elements per scale, grid).
Tensor lsq_fake_quantize(const Tensor& x, const Tensor& step, const Tensor& beta, int64_t axis, const QuantGrid& grid,
                         Rounding rounding = Rounding::HalfEven, std::optional<double> grad_scale = std::nullopt);
// LSQ's gradient scale 1 / sqrt(N * qmax), N = elements sharing one step.
double lsq_grad_scale(int64_t elements_per_scale, const QuantGrid& grid);

}  // namespace qslim::quant
