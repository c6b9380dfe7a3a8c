// Fully connected layer y = x W^T + b, W [out_features, in_features] as in PyTorch.
#pragma once
#include "nn/module.h"

namespace qslim::nn {

class Linear : public Module {
 public:
  // PyTorch default init: W ~ kaiming_uniform(a = sqrt(5)), b ~ U(-1/sqrt(in), 1/sqrt(in)).
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_bias() const { return has_param("bias"); }
  Tensor weight() const { return param("weight"); }
  Tensor bias() const { return has_bias() ? param("bias") : Tensor(); }
  void reset_parameters();

 private:
  int64_t in_, out_;
};

}  // namespace qslim::nn
