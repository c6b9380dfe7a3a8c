#include "nn/conv2d.h"

#include <cmath>

#include "core/factory.h"
#include "nn/init.h"

namespace qslim::nn {

Conv2D::Conv2D(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride, Size2 padding,
               Size2 dilation, int64_t groups, bool bias)
    : in_(in_channels), out_(out_channels), kernel_(kernel_size) {
  QSLIM_CHECK(in_channels > 0 && out_channels > 0, "Conv2D: channels must be positive, got in=", in_channels,
              ", out=", out_channels);
  QSLIM_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0, "Conv2D: groups=", groups,
              " must divide in_channels=", in_channels, " and out_channels=", out_channels);
  QSLIM_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "Conv2D: kernel_size must be positive, got ", kernel_size.str());
  QSLIM_CHECK(stride.h > 0 && stride.w > 0, "Conv2D: stride must be positive, got ", stride.str());
  QSLIM_CHECK(padding.h >= 0 && padding.w >= 0, "Conv2D: padding must be non-negative, got ", padding.str());
  QSLIM_CHECK(dilation.h > 0 && dilation.w > 0, "Conv2D: dilation must be positive, got ", dilation.str());
  p_.stride = stride.arr();
  p_.padding = padding.arr();
  p_.dilation = dilation.arr();
  p_.groups = groups;
  register_parameter("weight", empty({out_channels, in_channels / groups, kernel_size.h, kernel_size.w}));
  if (bias) register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void Conv2D::reset_parameters() {
  init::kaiming_uniform_(weight(), std::sqrt(5.0));
  if (has_bias()) {
    const double fan_in = static_cast<double>(in_ / p_.groups * kernel_.h * kernel_.w);
    const double bound = 1.0 / std::sqrt(fan_in);
    init::uniform_(bias(), -bound, bound);
  }
}

Tensor Conv2D::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4 && x.size(1) == in_, "Conv2D: expected input [N, ", in_, ", H, W], got ",
              shape_str(x.shape()));
  return conv2d(x, weight(), bias(), p_);
}

std::string Conv2D::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) + ", kernel_size=" + kernel_.str() +
                  ", stride=" + stride().str();
  if (!(padding() == Size2(0))) s += ", padding=" + padding().str();
  if (!(dilation() == Size2(1))) s += ", dilation=" + dilation().str();
  if (p_.groups != 1) s += ", groups=" + std::to_string(p_.groups);
  if (!has_bias()) s += ", bias=False";
  return s;
}

}  // namespace qslim::nn
