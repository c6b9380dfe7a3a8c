#include "nn/pooling.h"

#include "autograd/ops_conv.h"

namespace qslim::nn {

namespace {
void check_pool_args(const char* layer, Size2 kernel, Size2 stride, Size2 padding) {
  QSLIM_CHECK(kernel.h > 0 && kernel.w > 0, layer, ": kernel_size must be positive, got ", kernel.str());
  QSLIM_CHECK(stride.h > 0 && stride.w > 0, layer, ": stride must be positive, got ", stride.str());
  QSLIM_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, layer,
              ": padding ", padding.str(), " must be non-negative and at most half of kernel_size ", kernel.str());
}

void check_nchw(const char* layer, const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4, layer, ": expected input [N, C, H, W], got ", shape_str(x.shape()));
}

Size2 default_stride(Size2 stride, Size2 kernel) { return stride == Size2(0) ? kernel : stride; }
}  // namespace

MaxPool2D::MaxPool2D(Size2 kernel_size, Size2 stride, Size2 padding)
    : kernel_(kernel_size), stride_(default_stride(stride, kernel_size)), padding_(padding) {
  check_pool_args("MaxPool2D", kernel_, stride_, padding_);
}

Tensor MaxPool2D::forward(const Tensor& x) {
  check_nchw("MaxPool2D", x);
  return max_pool2d(x, kernel_.arr(), stride_.arr(), padding_.arr());
}

std::string MaxPool2D::extra_repr() const {
  return "kernel_size=" + kernel_.str() + ", stride=" + stride_.str() + ", padding=" + padding_.str();
}

AvgPool2D::AvgPool2D(Size2 kernel_size, Size2 stride, Size2 padding, bool count_include_pad)
    : kernel_(kernel_size),
      stride_(default_stride(stride, kernel_size)),
      padding_(padding),
      count_include_pad_(count_include_pad) {
  check_pool_args("AvgPool2D", kernel_, stride_, padding_);
}

Tensor AvgPool2D::forward(const Tensor& x) {
  check_nchw("AvgPool2D", x);
  return avg_pool2d(x, kernel_.arr(), stride_.arr(), padding_.arr(), count_include_pad_);
}

std::string AvgPool2D::extra_repr() const {
  std::string s = "kernel_size=" + kernel_.str() + ", stride=" + stride_.str() + ", padding=" + padding_.str();
  if (!count_include_pad_) s += ", count_include_pad=False";
  return s;
}

AdaptiveAvgPool2D::AdaptiveAvgPool2D(Size2 output_size) : output_size_(output_size) {
  QSLIM_CHECK(output_size.h > 0 && output_size.w > 0, "AdaptiveAvgPool2D: output_size must be positive, got ",
              output_size.str());
}

Tensor AdaptiveAvgPool2D::forward(const Tensor& x) {
  check_nchw("AdaptiveAvgPool2D", x);
  return adaptive_avg_pool2d(x, output_size_.arr());
}

}  // namespace qslim::nn
