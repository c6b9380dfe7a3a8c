// Activation modules wrapping the differentiable ops of autograd/ops_activation.h.
#pragma once
#include "nn/module.h"

namespace qslim::nn {

#define QSLIM_SIMPLE_ACTIVATION(Name)                                 \
  class Name : public Module {                                        \
   public:                                                             \
    using Module::forward;                                            \
    Tensor forward(const Tensor& x) override;                         \
    std::string type_name() const override { return #Name; }         \
  };

QSLIM_SIMPLE_ACTIVATION(ReLU)
QSLIM_SIMPLE_ACTIVATION(ReLU6)
QSLIM_SIMPLE_ACTIVATION(Sigmoid)
QSLIM_SIMPLE_ACTIVATION(Tanh)
QSLIM_SIMPLE_ACTIVATION(Hardswish)
QSLIM_SIMPLE_ACTIVATION(Hardsigmoid)
QSLIM_SIMPLE_ACTIVATION(SiLU)
#undef QSLIM_SIMPLE_ACTIVATION

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;
  double negative_slope() const { return slope_; }

 private:
  double slope_;
};

class GELU : public Module {
 public:
  explicit GELU(bool approximate_tanh = false) : tanh_(approximate_tanh) {}
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return tanh_ ? "approximate='tanh'" : ""; }
  bool approximate_tanh() const { return tanh_; }

 private:
  bool tanh_;
};

}  // namespace qslim::nn
