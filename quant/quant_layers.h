// QAT wrappers that quant_aware puts in place of float layers (QUANT_SPEC.md §2, §7).
//
// QuantedConv2D / QuantedLinear register the wrapped layer's weight and bias as their own
// parameters (same tensors, same names: "<layer>.weight" stays "<layer>.weight") and own two
// children: "weight_quanter" (built with channels = out channels, axis 0) and
// "activation_quanter" (applied to the input). forward = op(aq(x), wq(weight), bias).
//
// QuantedOp wraps a weight-less op (Add, Concat, pooling, activation) as child "op" and
// fake-quantizes its inputs (one quanter per input: "activation_quanter" for unary ops,
// "activation_quanter_0", "activation_quanter_1" for Add) or its output (Concat, one quanter,
// which equals quantizing every input with one shared step).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "quant/converted_layers.h"
#include "quant/quant_config.h"
#include "quant/quanter.h"

namespace qslim::quant {

class QuantedLayer : public nn::Module {
 public:
  // The frozen integer form of this layer (a new module; this one is left unchanged). Runs the
  // weight quanter once in eval mode without gradients on the final weight. Throws when a quanter
  // has no statistics yet.
  virtual std::shared_ptr<ConvertedLayer> convert() = 0;
  // The quant type of the wrapped layer ("Conv2D", "DepthwiseConv2D", "Linear", "Add", ...).
  const std::string& quant_type() const { return quant_type_; }

 protected:
  explicit QuantedLayer(std::string quant_type) : quant_type_(std::move(quant_type)) {}
  // Registers `q` as child `name`, checking its role.
  void add_quanter(const std::string& name, const QuanterPtr& q, QuantRole role);

 private:
  std::string quant_type_;
};

// Shared by the weighted wrappers: the weight/bias registration and the two quanters.
class QuantedWeightLayer : public QuantedLayer {
 public:
  Tensor weight() const { return param("weight"); }
  Tensor bias() const { return has_param("bias") ? param("bias") : Tensor(); }
  bool has_bias() const { return has_param("bias"); }
  Quanter& weight_quanter() const;
  Quanter& activation_quanter() const;

 protected:
  QuantedWeightLayer(std::string quant_type, const nn::Module& source, QuanterPtr weight_quanter,
                     QuanterPtr activation_quanter);
  // Frozen weight params after one eval, no-grad pass of the weight quanter over `w`.
  QuantParams freeze_weight(const Tensor& w) const;
  // The activation quanter's frozen params; throws unless per tensor.
  QuantParams freeze_input() const;
};

class QuantedConv2D : public QuantedWeightLayer {
 public:
  QuantedConv2D(std::shared_ptr<nn::Conv2D> conv, QuanterPtr weight_quanter, QuanterPtr activation_quanter);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantedConv2D"; }
  std::string extra_repr() const override { return conv_->extra_repr(); }
  std::shared_ptr<ConvertedLayer> convert() override;
  const nn::Conv2D& geometry() const { return *conv_; }

 private:
  std::shared_ptr<nn::Conv2D> conv_;  // geometry only; its tensors are registered here
};

class QuantedLinear : public QuantedWeightLayer {
 public:
  QuantedLinear(std::shared_ptr<nn::Linear> linear, QuanterPtr weight_quanter, QuanterPtr activation_quanter);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantedLinear"; }
  std::string extra_repr() const override { return linear_->extra_repr(); }
  std::shared_ptr<ConvertedLayer> convert() override;
  const nn::Linear& geometry() const { return *linear_; }

 private:
  std::shared_ptr<nn::Linear> linear_;
};

class QuantedOp : public QuantedLayer {
 public:
  // Inputs: one quanter per input the op takes; Output: exactly one.
  QuantedOp(nn::ModulePtr op, const std::string& quant_type, OpQuantPoint point, std::vector<QuanterPtr> quanters);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  Tensor forward(const std::vector<Tensor>& xs) override;
  std::string type_name() const override { return "Quanted" + op_->type_name(); }
  std::shared_ptr<ConvertedLayer> convert() override;

  OpQuantPoint point() const { return point_; }
  size_t num_quanters() const { return n_; }
  Quanter& quanter(size_t i) const;

 private:
  std::string quanter_name(size_t i) const;
  nn::ModulePtr op_;
  OpQuantPoint point_;
  size_t n_;
};

// The built-in wrapper of a quant type: Conv2D and DepthwiseConv2D -> QuantedConv2D, Linear ->
// QuantedLinear, Add -> QuantedOp (two input quanters), Concat -> QuantedOp (output quanter),
// pooling and activations -> QuantedOp (input quanter). Empty for other types.
QatLayerFactory builtin_qat_mapping(const std::string& quant_type);

}  // namespace qslim::quant
