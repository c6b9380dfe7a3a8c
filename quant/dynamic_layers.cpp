#include "quant/dynamic_layers.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops_conv.h"
#include "autograd/ops_linalg.h"
#include "core/cpu/int8_gemm.h"
#include "core/factory.h"
#include "quant/fake_quant.h"
#include "quant/quant_config.h"

namespace qslim::quant {

void check_dynamic_bits(int bits, const std::string& who) {
  QSLIM_CHECK(bits == 8 || bits == 16, who, ": weight_bits must be 8 or 16 (int8 or int16 weights), got ", bits);
}

// ---------------------------------------------------------------- DynamicWeightLayer

namespace {
QuantGrid dynamic_grid(int bits, const std::string& who) {
  check_dynamic_bits(bits, who);
  return QuantGrid(bits, GridKind::Narrow);
}
}  // namespace

DynamicWeightLayer::DynamicWeightLayer(std::string source_type, const Shape& weight_shape, int bits,
                                       int64_t weight_axis, bool has_bias)
    : IntegerWeightLayer("Dynamic", source_type, weight_shape, dynamic_grid(bits, "Dynamic " + source_type),
                         weight_axis, has_bias) {}

void DynamicWeightLayer::quantize_weight(const Tensor& float_weight) {
  Tensor q = buffer("weight");
  QSLIM_CHECK(float_weight.shape() == q.shape(), type_name(), ": weight ", shape_str(float_weight.shape()),
              " does not match the layer's ", shape_str(q.shape()));
  QSLIM_CHECK(float_weight.is_floating_point(), type_name(), ": expected a floating weight, got ",
              dtype_name(float_weight.dtype()));
  const Tensor w = float_weight.detach().to(DType::F32).contiguous();
  const float* pw = w.data<float>();
  const int64_t channels = weight_axis() == 0 ? q.size(0) : 1;
  const int64_t per = w.numel() / channels;
  const double qmax = static_cast<double>(weight_grid().qmax());
  std::vector<double> scales(channels);
  for (int64_t c = 0; c < channels; ++c) {
    float m = 0;
    for (int64_t i = c * per; i < (c + 1) * per; ++i) {
      QSLIM_CHECK(std::isfinite(pw[i]), type_name(), ": weight element ", i, " is ", pw[i],
                  "; only finite weights can be quantized");
      m = std::max(m, std::fabs(pw[i]));
    }
    scales[c] = static_cast<double>(m) / qmax;  // floored at kScaleFloor by per_channel_params
  }
  const QuantParams p = per_channel_params(scales, weight_axis(), weight_grid());
  q.copy_(quantize(w, p));
  buffer("weight_scale").copy_(p.scale);
}

std::vector<ConvertedLayer::Record> DynamicWeightLayer::quant_records() const { return {{"weight", weight_params()}}; }

std::string DynamicWeightLayer::extra_repr() const {
  return source_type() + ", weight=" + weight_grid().to_string() + (weight_axis() == 0 ? " per channel" : " per tensor") +
         ", activations=f32, bias=" + (has_bias() ? "True" : "False");
}

// ---------------------------------------------------------------- DynamicQuantLinear

DynamicQuantLinear::DynamicQuantLinear(int64_t in_features, int64_t out_features, int bits, int64_t weight_axis,
                                       bool has_bias)
    : DynamicWeightLayer("Linear", {out_features, in_features}, bits, weight_axis, has_bias),
      in_(in_features),
      out_(out_features) {}

std::shared_ptr<DynamicQuantLinear> DynamicQuantLinear::from_float(const nn::Linear& linear, int bits,
                                                                   int64_t weight_axis) {
  auto m = std::make_shared<DynamicQuantLinear>(linear.in_features(), linear.out_features(), bits, weight_axis,
                                                linear.has_bias());
  m->quantize_weight(linear.weight());
  if (linear.has_bias()) m->set_bias(linear.bias());
  m->train(linear.is_training());
  return m;
}

Tensor DynamicQuantLinear::matmul(const Tensor& x) const {
  const Tensor q = buffer("weight");
  // Inference on int8 weights: dequantize inside the GEMM (cache-sized panels), never the whole
  // float weight. Training through the layer (or int16 weights) uses the cached float weight.
  if (q.dtype() != DType::I8 || x.dtype() != DType::F32 || (GradMode::is_enabled() && x.requires_grad()))
    return linear(x, dequantized_weight(), bias_or_undefined());
  const Tensor xc = x.contiguous();
  const int64_t m = xc.numel() / in_;
  Shape out_shape = xc.shape();
  out_shape.back() = out_;
  Tensor y = Tensor::empty(out_shape, DType::F32);
  const Tensor s = buffer("weight_scale").contiguous();
  const Tensor b = has_bias() ? buffer("bias").contiguous() : Tensor();
  cpu::gemm_f32_s8w(m, out_, in_, xc.data<float>(), in_, q.contiguous().data<int8_t>(), in_, s.data<float>(),
                    s.numel(), b.defined() ? b.data<float>() : nullptr, y.data<float>(), out_);
  return y;
}

Tensor DynamicQuantLinear::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() >= 1 && x.size(-1) == in_, "DynamicQuantLinear: input ", shape_str(x.shape()), " has last dim ",
              x.dim() >= 1 ? x.size(-1) : 0, " but the layer expects in_features=", in_);
  return matmul(x);
}

// ---------------------------------------------------------------- DynamicQuantConv2D

DynamicQuantConv2D::DynamicQuantConv2D(const nn::Conv2D& geometry, const std::string& source_type, int bits,
                                       int64_t weight_axis, bool has_bias)
    : DynamicWeightLayer(source_type, geometry.weight().shape(), bits, weight_axis, has_bias),
      in_(geometry.in_channels()),
      p_(geometry.conv_params()) {}

std::shared_ptr<DynamicQuantConv2D> DynamicQuantConv2D::from_float(const nn::Conv2D& conv, int bits,
                                                                   int64_t weight_axis) {
  auto m =
      std::make_shared<DynamicQuantConv2D>(conv, QuantConfig::quant_type_of(conv), bits, weight_axis, conv.has_bias());
  m->quantize_weight(conv.weight());
  if (conv.has_bias()) m->set_bias(conv.bias());
  m->train(conv.is_training());
  return m;
}

Tensor DynamicQuantConv2D::conv(const Tensor& x) const {
  return conv2d(x, dequantized_weight(), bias_or_undefined(), p_);
}

Tensor DynamicQuantConv2D::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4 && x.size(1) == in_, "DynamicQuantConv2D: expected input [N, ", in_, ", H, W], got ",
              shape_str(x.shape()));
  return conv(x);
}

}  // namespace qslim::quant
