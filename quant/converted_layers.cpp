#include "quant/converted_layers.h"

#include "autograd/ops_conv.h"
#include "autograd/ops_linalg.h"
#include "core/factory.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

const char* op_quant_point_name(OpQuantPoint p) { return p == OpQuantPoint::Inputs ? "inputs" : "output"; }

// ---------------------------------------------------------------- ConvertedLayer

void ConvertedLayer::register_activation(const std::string& name) {
  register_buffer(name + "_scale", ones({1}));
  register_buffer(name + "_zero_point", zeros({1}, DType::I32));
}

void ConvertedLayer::set_activation(const std::string& name, const ActQuantSpec& spec, const QuantParams& p) {
  QSLIM_CHECK(!p.per_channel() && p.channels() == 1, type_name(), ": ", name,
              " quantization must be per tensor (one step), got axis ", p.axis, " with ", p.channels(), " steps");
  QSLIM_CHECK(p.grid == spec.grid, type_name(), ": ", name, " quantization has grid ", p.grid.to_string(),
              " but the layer was built for ", spec.grid.to_string());
  QSLIM_CHECK(p.rounding == spec.rounding, type_name(), ": ", name, " quantization rounds ", rounding_name(p.rounding),
              " but the layer was built for ", rounding_name(spec.rounding));
  const std::vector<int64_t> z = p.zero_points();
  QSLIM_CHECK(z[0] >= spec.grid.qmin() && z[0] <= spec.grid.qmax(), type_name(), ": ", name, " zero point ", z[0],
              " lies outside ", spec.grid.to_string());
  buffer(name + "_scale").fill_(p.scales()[0]);
  buffer(name + "_zero_point").fill_(static_cast<double>(z[0]));
}

QuantParams ConvertedLayer::activation_params(const std::string& name, const ActQuantSpec& spec) const {
  QuantParams p;
  p.scale = buffer(name + "_scale").clone();
  p.zero_point = buffer(name + "_zero_point").clone();
  p.axis = -1;
  p.grid = spec.grid;
  p.rounding = spec.rounding;
  return p;
}

Tensor ConvertedLayer::quantize_activation(const Tensor& x, const std::string& name, const ActQuantSpec& spec) const {
  return fake_quantize(x, buffer(name + "_scale"), buffer(name + "_zero_point"), -1, spec.grid, spec.rounding,
                       SteMode::Clipped);
}

// ---------------------------------------------------------------- IntegerWeightLayer

IntegerWeightLayer::IntegerWeightLayer(const std::string& kind, std::string source_type, const Shape& weight_shape,
                                       const QuantGrid& weight_grid, int64_t weight_axis, bool has_bias)
    : ConvertedLayer(std::move(source_type)), weight_grid_(weight_grid), weight_axis_(weight_axis) {
  QSLIM_CHECK(weight_grid.kind() != GridKind::Unsigned, kind, " ", this->source_type(),
              ": weights need a symmetric grid (narrow or signed), got ", weight_grid.to_string());
  QSLIM_CHECK(weight_axis == 0 || weight_axis == -1, kind, " ", this->source_type(),
              ": weight steps are per output channel (axis 0) or per tensor (-1), got axis ", weight_axis);
  register_buffer("weight", zeros(weight_shape, weight_grid.storage_dtype()));
  register_buffer("weight_scale", ones({weight_axis == 0 ? weight_shape[0] : 1}));
  if (has_bias) register_buffer("bias", zeros({weight_shape[0]}));
}

void IntegerWeightLayer::set_bias(const Tensor& bias) {
  QSLIM_CHECK(has_bias(), type_name(), ": the layer was built without a bias");
  QSLIM_CHECK(bias.shape() == buffer("bias").shape(), type_name(), ": bias ", shape_str(bias.shape()), " vs ",
              shape_str(buffer("bias").shape()));
  buffer("bias").copy_(bias.detach());
}

QuantParams IntegerWeightLayer::weight_params() const {
  QuantParams p;
  p.scale = buffer("weight_scale").clone();
  p.zero_point = zeros(p.scale.shape(), DType::I32);
  p.axis = weight_axis_;
  p.grid = weight_grid_;
  return p;
}

Tensor IntegerWeightLayer::dequantized_weight() const {
  const Tensor q = buffer("weight"), s = buffer("weight_scale");
  const void* keys[2] = {q.impl_ptr().get(), s.impl_ptr().get()};
  const uint64_t versions[2] = {q.version(), s.version()};
  const bool fresh = cache_.defined() && keys[0] == cache_key_[0] && keys[1] == cache_key_[1] &&
                     versions[0] == cache_version_[0] && versions[1] == cache_version_[1];
  if (!fresh) {
    QuantParams p = weight_params();
    p.scale = s;
    cache_ = dequantize(q, p);
    for (int i = 0; i < 2; ++i) {
      cache_key_[i] = keys[i];
      cache_version_[i] = versions[i];
    }
  }
  return cache_;
}

// ---------------------------------------------------------------- ConvertedWeightLayer

ConvertedWeightLayer::ConvertedWeightLayer(std::string source_type, const Shape& weight_shape,
                                           const QuantGrid& weight_grid, int64_t weight_axis, const ActQuantSpec& input,
                                           bool has_bias)
    : IntegerWeightLayer("Converted", std::move(source_type), weight_shape, weight_grid, weight_axis, has_bias),
      input_(input) {
  register_activation("input");
}

void ConvertedWeightLayer::set_weight(const Tensor& float_weight, const QuantParams& wp) {
  Tensor q = buffer("weight");
  QSLIM_CHECK(float_weight.shape() == q.shape(), type_name(), ": weight ", shape_str(float_weight.shape()),
              " does not match the layer's ", shape_str(q.shape()));
  QSLIM_CHECK(wp.grid == weight_grid(), type_name(), ": weight quantization has grid ", wp.grid.to_string(),
              " but the layer was built for ", weight_grid().to_string());
  QSLIM_CHECK(wp.axis == weight_axis(), type_name(), ": weight steps along axis ", wp.axis,
              " but the layer was built for axis ", weight_axis());
  QSLIM_CHECK(wp.symmetric(), type_name(), ": weight quantization must be symmetric (zero points 0)");
  QSLIM_CHECK(wp.channels() == buffer("weight_scale").numel(), type_name(), ": ", wp.channels(), " weight steps for ",
              buffer("weight_scale").numel(), " channels");
  q.copy_(quantize(float_weight.detach().to(DType::F32), wp));
  buffer("weight_scale").copy_(wp.scale.reshape(buffer("weight_scale").shape()));
}

void ConvertedWeightLayer::set_input(const QuantParams& ip) { set_activation("input", input_, ip); }

QuantParams ConvertedWeightLayer::input_params() const { return activation_params("input", input_); }

std::vector<ConvertedLayer::Record> ConvertedWeightLayer::quant_records() const {
  return {{"weight", weight_params()}, {"input", input_params()}};
}

std::string ConvertedWeightLayer::extra_repr() const {
  return "weight=" + weight_grid().to_string() + (weight_axis() == 0 ? " per channel" : " per tensor") +
         ", input=" + input_.grid.to_string() + ", bias=" + (has_bias() ? "True" : "False");
}

// ---------------------------------------------------------------- ConvertedConv2D / Linear

ConvertedConv2D::ConvertedConv2D(const nn::Conv2D& geometry, const std::string& source_type,
                                 const QuantGrid& weight_grid, int64_t weight_axis, const ActQuantSpec& input,
                                 bool has_bias)
    : ConvertedWeightLayer(source_type, geometry.weight().shape(), weight_grid, weight_axis, input, has_bias),
      in_(geometry.in_channels()),
      p_(geometry.conv_params()) {}

Tensor ConvertedConv2D::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4 && x.size(1) == in_, "ConvertedConv2D: expected input [N, ", in_, ", H, W], got ",
              shape_str(x.shape()));
  return conv2d(quantize_input(x), dequantized_weight(), bias_or_undefined(), p_);
}

ConvertedLinear::ConvertedLinear(int64_t in_features, int64_t out_features, const QuantGrid& weight_grid,
                                 int64_t weight_axis, const ActQuantSpec& input, bool has_bias)
    : ConvertedWeightLayer("Linear", {out_features, in_features}, weight_grid, weight_axis, input, has_bias),
      in_(in_features) {}

Tensor ConvertedLinear::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() >= 1 && x.size(-1) == in_, "ConvertedLinear: input ", shape_str(x.shape()), " has last dim ",
              x.dim() >= 1 ? x.size(-1) : 0, " but the layer expects in_features=", in_);
  return linear(quantize_input(x), dequantized_weight(), bias_or_undefined());
}

// ---------------------------------------------------------------- ConvertedOp

ConvertedOp::ConvertedOp(nn::ModulePtr op, const std::string& source_type, OpQuantPoint point,
                         std::vector<ActQuantSpec> specs)
    : ConvertedLayer(source_type), point_(point), specs_(std::move(specs)) {
  QSLIM_CHECK(op != nullptr, "ConvertedOp(", source_type, "): null op");
  QSLIM_CHECK(!specs_.empty(), "ConvertedOp(", source_type, "): needs at least one quantization point");
  QSLIM_CHECK(point != OpQuantPoint::Output || specs_.size() == 1, "ConvertedOp(", source_type,
              "): output quantization takes one spec, got ", specs_.size());
  register_module("op", op);
  for (size_t i = 0; i < specs_.size(); ++i) register_activation(point_name(i));
}

std::string ConvertedOp::point_name(size_t i) const {
  if (point_ == OpQuantPoint::Output) return "output";
  return specs_.size() == 1 ? "input" : "input_" + std::to_string(i);
}

void ConvertedOp::set_point(size_t i, const QuantParams& p) {
  QSLIM_CHECK(i < specs_.size(), "ConvertedOp(", source_type(), "): point ", i, " out of range (", specs_.size(), ")");
  set_activation(point_name(i), specs_[i], p);
}

QuantParams ConvertedOp::point_params(size_t i) const { return activation_params(point_name(i), specs_.at(i)); }

Tensor ConvertedOp::forward(const Tensor& x) { return forward(std::vector<Tensor>{x}); }

Tensor ConvertedOp::forward(const std::vector<Tensor>& xs) {
  if (point_ == OpQuantPoint::Output) return quantize_activation(child("op").forward(xs), "output", specs_[0]);
  QSLIM_CHECK(xs.size() == specs_.size(), "ConvertedOp(", source_type(), "): expected ", specs_.size(),
              " inputs (one quantization each), got ", xs.size());
  std::vector<Tensor> q;
  q.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) q.push_back(quantize_activation(xs[i], point_name(i), specs_[i]));
  return child("op").forward(q);
}

std::vector<ConvertedLayer::Record> ConvertedOp::quant_records() const {
  std::vector<Record> out;
  for (size_t i = 0; i < specs_.size(); ++i) out.push_back({point_name(i), point_params(i)});
  return out;
}

std::string ConvertedOp::extra_repr() const {
  return source_type() + ", " + op_quant_point_name(point_) + "=" + specs_[0].grid.to_string();
}

}  // namespace qslim::quant
