// 2-D convolution layer, NCHW, weight [out, in/groups, kh, kw] as in PyTorch.
#pragma once
#include "autograd/ops_conv.h"
#include "nn/module.h"
#include "nn/size2.h"

namespace qslim::nn {

class Conv2D : public Module {
 public:
  // PyTorch default init: W ~ kaiming_uniform(a = sqrt(5)), b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  Conv2D(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
         Size2 dilation = 1, int64_t groups = 1, bool bias = true);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2D"; }
  std::string extra_repr() const override;

  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  Size2 kernel_size() const { return kernel_; }
  Size2 stride() const { return {p_.stride[0], p_.stride[1]}; }
  Size2 padding() const { return {p_.padding[0], p_.padding[1]}; }
  Size2 dilation() const { return {p_.dilation[0], p_.dilation[1]}; }
  int64_t groups() const { return p_.groups; }
  const Conv2dParams& conv_params() const { return p_; }
  bool has_bias() const { return has_param("bias"); }
  Tensor weight() const { return param("weight"); }
  Tensor bias() const { return has_bias() ? param("bias") : Tensor(); }
  void reset_parameters();

 private:
  int64_t in_, out_;
  Size2 kernel_;
  Conv2dParams p_;
};

}  // namespace qslim::nn
