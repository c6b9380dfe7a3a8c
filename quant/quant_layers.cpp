#include "quant/quant_layers.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops_conv.h"
#include "autograd/ops_linalg.h"

namespace qslim::quant {

namespace {

ActQuantSpec spec_of(const QuantParams& p) { return {p.grid, p.rounding}; }

QuantParams per_tensor_activation(const Quanter& q, const std::string& who) {
  QuantParams p = q.quant_params();
  QSLIM_CHECK(!p.per_channel() && p.channels() == 1, who, ": activation quantization must be per tensor, got axis ",
              p.axis, " with ", p.channels(), " steps");
  return p;
}

}  // namespace

// ---------------------------------------------------------------- QuantedLayer

void QuantedLayer::add_quanter(const std::string& name, const QuanterPtr& q, QuantRole role) {
  QSLIM_CHECK(q != nullptr, type_name(), ": ", name, " is null");
  QSLIM_CHECK(q->role() == role, type_name(), ": ", name, " must have role ", quant_role_name(role), ", got ",
              q->type_name(), " with role ", quant_role_name(q->role()));
  register_module(name, q);
}

// ---------------------------------------------------------------- QuantedWeightLayer

QuantedWeightLayer::QuantedWeightLayer(std::string quant_type, const nn::Module& source, QuanterPtr weight_quanter,
                                       QuanterPtr activation_quanter)
    : QuantedLayer(std::move(quant_type)) {
  const Tensor w = source.param("weight");
  register_parameter("weight", w, w.requires_grad());
  if (source.has_param("bias")) {
    const Tensor b = source.param("bias");
    register_parameter("bias", b, b.requires_grad());
  }
  add_quanter("weight_quanter", weight_quanter, QuantRole::Weight);
  add_quanter("activation_quanter", activation_quanter, QuantRole::Activation);
  train(source.is_training());
}

Quanter& QuantedWeightLayer::weight_quanter() const { return static_cast<Quanter&>(child("weight_quanter")); }
Quanter& QuantedWeightLayer::activation_quanter() const { return static_cast<Quanter&>(child("activation_quanter")); }

QuantParams QuantedWeightLayer::freeze_weight(const Tensor& w) const {
  Quanter& q = weight_quanter();
  const bool was_training = q.is_training();
  NoGradGuard no_grad;
  q.eval();
  try {
    q(w.detach());
  } catch (...) {
    q.train(was_training);
    throw;
  }
  q.train(was_training);
  return q.quant_params();
}

QuantParams QuantedWeightLayer::freeze_input() const {
  return per_tensor_activation(activation_quanter(), type_name());
}

// ---------------------------------------------------------------- QuantedConv2D

QuantedConv2D::QuantedConv2D(std::shared_ptr<nn::Conv2D> conv, QuanterPtr weight_quanter, QuanterPtr activation_quanter)
    : QuantedWeightLayer(conv ? QuantConfig::quant_type_of(*conv) : "",
                         conv ? *conv : throw Error("QuantedConv2D: null conv"), std::move(weight_quanter),
                         std::move(activation_quanter)),
      conv_(std::move(conv)) {}

Tensor QuantedConv2D::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4 && x.size(1) == conv_->in_channels(), "QuantedConv2D: expected input [N, ",
              conv_->in_channels(), ", H, W], got ", shape_str(x.shape()));
  Tensor xq = activation_quanter()(x);
  Tensor wq = weight_quanter()(weight());
  return conv2d(xq, wq, bias(), conv_->conv_params());
}

std::shared_ptr<ConvertedLayer> QuantedConv2D::convert() {
  const QuantParams wp = freeze_weight(weight());
  const QuantParams ip = freeze_input();
  auto c = std::make_shared<ConvertedConv2D>(*conv_, quant_type(), wp.grid, wp.axis, spec_of(ip), has_bias());
  c->set_weight(weight(), wp);
  c->set_input(ip);
  if (has_bias()) c->set_bias(bias());
  c->train(is_training());
  return c;
}

// ---------------------------------------------------------------- QuantedLinear

QuantedLinear::QuantedLinear(std::shared_ptr<nn::Linear> linear, QuanterPtr weight_quanter,
                             QuanterPtr activation_quanter)
    : QuantedWeightLayer("Linear", linear ? *linear : throw Error("QuantedLinear: null linear"),
                         std::move(weight_quanter), std::move(activation_quanter)),
      linear_(std::move(linear)) {}

Tensor QuantedLinear::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() >= 1 && x.size(-1) == linear_->in_features(), "QuantedLinear: input ", shape_str(x.shape()),
              " has last dim ", x.dim() >= 1 ? x.size(-1) : 0,
              " but the layer expects in_features=", linear_->in_features());
  Tensor xq = activation_quanter()(x);
  Tensor wq = weight_quanter()(weight());
  return linear(xq, wq, bias());
}

std::shared_ptr<ConvertedLayer> QuantedLinear::convert() {
  const QuantParams wp = freeze_weight(weight());
  const QuantParams ip = freeze_input();
  auto c = std::make_shared<ConvertedLinear>(linear_->in_features(), linear_->out_features(), wp.grid, wp.axis,
                                             spec_of(ip), has_bias());
  c->set_weight(weight(), wp);
  c->set_input(ip);
  if (has_bias()) c->set_bias(bias());
  c->train(is_training());
  return c;
}

// ---------------------------------------------------------------- QuantedOp

QuantedOp::QuantedOp(nn::ModulePtr op, const std::string& quant_type, OpQuantPoint point,
                     std::vector<QuanterPtr> quanters)
    : QuantedLayer(quant_type), op_(std::move(op)), point_(point), n_(quanters.size()) {
  QSLIM_CHECK(op_ != nullptr, "QuantedOp(", quant_type, "): null op");
  QSLIM_CHECK(op_->named_parameters().empty(), "QuantedOp: ", op_->type_name(),
              " has parameters; only weight-less ops can be wrapped");
  QSLIM_CHECK(n_ >= 1, "QuantedOp(", quant_type, "): needs at least one quanter");
  QSLIM_CHECK(point != OpQuantPoint::Output || n_ == 1, "QuantedOp(", quant_type,
              "): output quantization takes one quanter, got ", n_);
  register_module("op", op_);
  for (size_t i = 0; i < n_; ++i) add_quanter(quanter_name(i), quanters[i], QuantRole::Activation);
  train(op_->is_training());
}

std::string QuantedOp::quanter_name(size_t i) const {
  return n_ == 1 ? "activation_quanter" : "activation_quanter_" + std::to_string(i);
}

Quanter& QuantedOp::quanter(size_t i) const {
  QSLIM_CHECK(i < n_, type_name(), ": quanter ", i, " out of range (", n_, ")");
  return static_cast<Quanter&>(child(quanter_name(i)));
}

Tensor QuantedOp::forward(const Tensor& x) { return forward(std::vector<Tensor>{x}); }

Tensor QuantedOp::forward(const std::vector<Tensor>& xs) {
  if (point_ == OpQuantPoint::Output) return quanter(0)(child("op").forward(xs));
  QSLIM_CHECK(xs.size() == n_, type_name(), ": expected ", n_, " inputs (one quanter each), got ", xs.size());
  std::vector<Tensor> q;
  q.reserve(n_);
  for (size_t i = 0; i < n_; ++i) q.push_back(quanter(i)(xs[i]));
  return child("op").forward(q);
}

std::shared_ptr<ConvertedLayer> QuantedOp::convert() {
  std::vector<QuantParams> params;
  std::vector<ActQuantSpec> specs;
  for (size_t i = 0; i < n_; ++i) {
    params.push_back(per_tensor_activation(quanter(i), type_name()));
    specs.push_back(spec_of(params.back()));
  }
  auto c = std::make_shared<ConvertedOp>(child_ptr("op"), quant_type(), point_, specs);
  for (size_t i = 0; i < n_; ++i) c->set_point(i, params[i]);
  c->train(is_training());
  return c;
}

// ---------------------------------------------------------------- built-in mappings

QatLayerFactory builtin_qat_mapping(const std::string& quant_type) {
  if (quant_type == "Conv2D" || quant_type == "DepthwiseConv2D") {
    return [quant_type](const nn::ModulePtr& layer, const ResolvedQuant& q) -> std::shared_ptr<QuantedLayer> {
      auto conv = std::dynamic_pointer_cast<nn::Conv2D>(layer);
      QSLIM_CHECK(conv != nullptr, "QAT mapping ", quant_type, ": expected a Conv2D, got ", layer->type_name());
      return std::make_shared<QuantedConv2D>(conv, q.weight.make(conv->out_channels()), q.activation.make());
    };
  }
  if (quant_type == "Linear") {
    return [](const nn::ModulePtr& layer, const ResolvedQuant& q) -> std::shared_ptr<QuantedLayer> {
      auto linear = std::dynamic_pointer_cast<nn::Linear>(layer);
      QSLIM_CHECK(linear != nullptr, "QAT mapping Linear: expected a Linear, got ", layer->type_name());
      return std::make_shared<QuantedLinear>(linear, q.weight.make(linear->out_features()), q.activation.make());
    };
  }
  if (quant_type == "Add") {
    return [](const nn::ModulePtr& layer, const ResolvedQuant& q) -> std::shared_ptr<QuantedLayer> {
      return std::make_shared<QuantedOp>(layer, "Add", OpQuantPoint::Inputs,
                                         std::vector<QuanterPtr>{q.activation.make(), q.activation.make()});
    };
  }
  if (quant_type == "Concat") {
    return [](const nn::ModulePtr& layer, const ResolvedQuant& q) -> std::shared_ptr<QuantedLayer> {
      return std::make_shared<QuantedOp>(layer, "Concat", OpQuantPoint::Output,
                                         std::vector<QuanterPtr>{q.activation.make()});
    };
  }
  const auto& all = quantizable_types();
  if (std::find(all.begin(), all.end(), quant_type) != all.end()) {
    return [quant_type](const nn::ModulePtr& layer, const ResolvedQuant& q) -> std::shared_ptr<QuantedLayer> {
      return std::make_shared<QuantedOp>(layer, quant_type, OpQuantPoint::Inputs,
                                         std::vector<QuanterPtr>{q.activation.make()});
    };
  }
  return nullptr;
}

}  // namespace qslim::quant
