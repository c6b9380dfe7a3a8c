// Pooling layers over NCHW inputs.
#pragma once
#include "nn/module.h"
#include "nn/size2.h"

namespace qslim::nn {

class MaxPool2D : public Module {
 public:
  // stride 0 means stride = kernel_size (PyTorch's default).
  explicit MaxPool2D(Size2 kernel_size, Size2 stride = 0, Size2 padding = 0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2D"; }
  std::string extra_repr() const override;
  Size2 kernel_size() const { return kernel_; }
  Size2 stride() const { return stride_; }
  Size2 padding() const { return padding_; }

 private:
  Size2 kernel_, stride_, padding_;
};

class AvgPool2D : public Module {
 public:
  explicit AvgPool2D(Size2 kernel_size, Size2 stride = 0, Size2 padding = 0, bool count_include_pad = true);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AvgPool2D"; }
  std::string extra_repr() const override;
  Size2 kernel_size() const { return kernel_; }
  Size2 stride() const { return stride_; }
  Size2 padding() const { return padding_; }
  bool count_include_pad() const { return count_include_pad_; }

 private:
  Size2 kernel_, stride_, padding_;
  bool count_include_pad_;
};

class AdaptiveAvgPool2D : public Module {
 public:
  explicit AdaptiveAvgPool2D(Size2 output_size);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AdaptiveAvgPool2D"; }
  std::string extra_repr() const override { return "output_size=" + output_size_.str(); }
  Size2 output_size() const { return output_size_; }

 private:
  Size2 output_size_;
};

}  // namespace qslim::nn
