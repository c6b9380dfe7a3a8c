#include "quant/quant_params.h"

#include "core/factory.h"

namespace qslim::quant {

std::vector<double> QuantParams::scales() const {
  QSLIM_CHECK(scale.defined(), "QuantParams: scale is undefined");
  return scale.to_vector<double>();
}

std::vector<int64_t> QuantParams::zero_points() const {
  if (!zero_point.defined()) return std::vector<int64_t>(channels(), 0);
  return zero_point.to_vector<int64_t>();
}

bool QuantParams::symmetric() const {
  for (int64_t z : zero_points())
    if (z != 0) return false;
  return true;
}

QuantParams per_tensor_params(double scale, int64_t zero_point, const QuantGrid& grid, Rounding rounding) {
  return per_channel_params({scale}, -1, grid, rounding, {zero_point});
}

QuantParams per_channel_params(const std::vector<double>& scales, int64_t axis, const QuantGrid& grid,
                               Rounding rounding, const std::vector<int64_t>& zero_points) {
  QSLIM_CHECK(!scales.empty(), "per_channel_params: no scales given");
  QSLIM_CHECK(axis >= -1, "per_channel_params: axis must be -1 (per tensor) or >= 0, got ", axis);
  QSLIM_CHECK(axis >= 0 || scales.size() == 1, "per_channel_params: per-tensor params (axis -1) take one scale, got ",
              scales.size());
  QSLIM_CHECK(zero_points.empty() || zero_points.size() == scales.size(), "per_channel_params: ", zero_points.size(),
              " zero points for ", scales.size(), " scales");
  const int64_t n = static_cast<int64_t>(scales.size());
  QuantParams p;
  p.scale = Tensor::empty({n}, DType::F32);
  p.zero_point = zeros({n}, DType::I32);
  float* s = p.scale.data<float>();
  int32_t* z = p.zero_point.data<int32_t>();
  for (int64_t c = 0; c < n; ++c) {
    s[c] = static_cast<float>(floor_scale(scales[c], "per_channel_params"));
    if (!zero_points.empty()) z[c] = static_cast<int32_t>(zero_points[c]);
  }
  p.axis = axis;
  p.grid = grid;
  p.rounding = rounding;
  return p;
}

void check_quant_args(const Tensor& scale, const Tensor& zero_point, int64_t axis, const Shape& shape, const char* op) {
  QSLIM_CHECK(scale.defined(), op, ": scale is undefined");
  QSLIM_CHECK(scale.is_floating_point(), op, ": scale must be f32 or f64, got ", dtype_name(scale.dtype()));
  const int64_t rank = static_cast<int64_t>(shape.size());
  QSLIM_CHECK(axis == -1 || (axis >= 0 && axis < rank), op, ": axis must be -1 (per tensor) or in [0, ", rank,
              ") for input ", shape_str(shape), ", got ", axis);
  const int64_t expected = axis < 0 ? 1 : shape[axis];
  QSLIM_CHECK(scale.numel() == expected, op, ": ",
              axis < 0 ? std::string("per-tensor quantization takes one scale")
                       : "input " + shape_str(shape) + " has " + std::to_string(expected) + " channels along axis " +
                             std::to_string(axis),
              ", but scale has shape ", shape_str(scale.shape()));
  if (zero_point.defined()) {
    QSLIM_CHECK(zero_point.dtype() == DType::I32, op, ": zero_point must be i32, got ", dtype_name(zero_point.dtype()));
    QSLIM_CHECK(zero_point.numel() == scale.numel(), op, ": zero_point ", shape_str(zero_point.shape()),
                " does not match scale ", shape_str(scale.shape()));
  }
}

}  // namespace qslim::quant
