// Weight-only (dynamic) quantized layers, what quant_post_dynamic leaves in place of Linear and
// Conv2D (QUANT_SPEC.md §6). The weight is stored as integers on the narrow grid of `bits` (8 or
// 16: int8 / int16) with f32 step sizes s = max|w| / (2^(b-1)-1), one per output channel (axis 0)
// or one per tensor; activations stay FP32 and are not quantized.
//
// State (buffers, no parameters, so state_dict() holds the integer tensors):
//   weight (i8 or i16, the float layer's shape), weight_scale (f32 [out] or [1]), bias (f32 [out], when present)
//
// forward() dequantizes the weight once into a cached f32 tensor (rebuilt only when the integer
// weight or the steps change, e.g. after load_state_dict) and runs the float op: the
// "dequantize at load" scheme. The product is isolated in matmul()/conv(), the one place a fused
// weight-only kernel (cpu::gemm_f32_s8w, dequantizing panels inside the GEMM) can take over.
#pragma once
#include <string>
#include <vector>

#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

class DynamicWeightLayer : public IntegerWeightLayer {
 public:
  // Quantizes `float_weight` (the float layer's weight, f32) onto the layer's grid: per output
  // channel when the layer was built with axis 0, else per tensor. The steps come from max|w|.
  void quantize_weight(const Tensor& float_weight);
  std::vector<Record> quant_records() const override;
  std::string extra_repr() const override;

 protected:
  // bits 8 or 16; weight_axis 0 (per output channel) or -1 (per tensor).
  DynamicWeightLayer(std::string source_type, const Shape& weight_shape, int bits, int64_t weight_axis, bool has_bias);
};

class DynamicQuantLinear : public DynamicWeightLayer {
 public:
  DynamicQuantLinear(int64_t in_features, int64_t out_features, int bits, int64_t weight_axis, bool has_bias);
  // A layer of `linear`'s shape holding its quantized weight and bias.
  static std::shared_ptr<DynamicQuantLinear> from_float(const nn::Linear& linear, int bits, int64_t weight_axis);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "DynamicQuantLinear"; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  Tensor matmul(const Tensor& x) const;
  int64_t in_, out_;
};

class DynamicQuantConv2D : public DynamicWeightLayer {
 public:
  // Geometry (channels, kernel, stride, padding, dilation, groups) from `geometry`; source_type is
  // its quant type ("Conv2D" or "DepthwiseConv2D").
  DynamicQuantConv2D(const nn::Conv2D& geometry, const std::string& source_type, int bits, int64_t weight_axis,
                     bool has_bias);
  static std::shared_ptr<DynamicQuantConv2D> from_float(const nn::Conv2D& conv, int bits, int64_t weight_axis);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "DynamicQuantConv2D"; }
  const Conv2dParams& conv_params() const { return p_; }
  int64_t in_channels() const { return in_; }

 private:
  Tensor conv(const Tensor& x) const;
  int64_t in_;
  Conv2dParams p_;
};

// 8 or 16, else throws "<who>: weight_bits must be 8 or 16, got <bits>".
void check_dynamic_bits(int bits, const std::string& who);

}  // namespace qslim::quant
