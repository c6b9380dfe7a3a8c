// QuantParams: the frozen quantization of one tensor (step sizes, zero points, channel axis, grid,
// rounding), as handed from a quanter or observer to convert and the integer kernels.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "quant/quant_grid.h"

namespace qslim::quant {

struct QuantParams {
  Tensor scale;       // f32 [C] (one step per channel along `axis`) or [1] (per tensor); each >= kScaleFloor
  Tensor zero_point;  // i32, same shape as scale; all 0 for symmetric quantizers
  int64_t axis = -1;  // channel axis of the quantized tensor; -1 = per tensor
  QuantGrid grid;
  Rounding rounding = Rounding::HalfEven;

  bool per_channel() const { return axis >= 0; }
  int64_t channels() const { return scale.defined() ? scale.numel() : 0; }
  std::vector<double> scales() const;        // scale as doubles
  std::vector<int64_t> zero_points() const;  // zero_point as integers (zeros when undefined)
  bool symmetric() const;                    // every zero point is 0
};

// Builders; the scales are floored at kScaleFloor (negative or non-finite ones throw).
QuantParams per_tensor_params(double scale, int64_t zero_point, const QuantGrid& grid,
                              Rounding rounding = Rounding::HalfEven);
// zero_points empty means all 0; otherwise one per scale.
QuantParams per_channel_params(const std::vector<double>& scales, int64_t axis, const QuantGrid& grid,
                               Rounding rounding = Rounding::HalfEven, const std::vector<int64_t>& zero_points = {});

// Checks scale/zero_point/axis against a tensor of shape `shape`, throwing with `op` in the
// message: scale floating with 1 element when axis == -1, else shape[axis] elements; zero_point
// undefined or i32 with as many elements; axis -1 or in [0, rank).
void check_quant_args(const Tensor& scale, const Tensor& zero_point, int64_t axis, const Shape& shape, const char* op);

}  // namespace qslim::quant
