// MobileNetV2 (Sandler et al. 2018): inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
// projection), residual Add when stride 1 and channels match.
//
// MobileNetV2Small: layer for layer MobileNetV2S of shared/peer/torch_models.py and its names
// (stem.{0,1,2}, blocks.<i>.conv.<k>, blocks.<i>.add, head.{0,1,2}, pool, fc); width 1 is the reference.
//
// MobileNetV2: torchvision's configuration and names (features.0.{0,1,2}, features.<i>.conv.0.0, ...,
// features.18, classifier.1) with strides reduced for small inputs: stem stride 1 and the 24-channel
// stage stride 1, so 28x28 runs at 28/14/7/4.
#pragma once
#include "nn/module.h"

namespace qslim::models {

// MobileNetV2S's block: one flat Sequential "conv" (conv, bn, relu6 triples; the last has no relu6).
class InvRes : public nn::Module {
 public:
  InvRes(int64_t in_channels, int64_t out_channels, int64_t stride, int64_t expand_ratio);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "InvRes"; }
};

class MobileNetV2Small : public nn::Module {
 public:
  explicit MobileNetV2Small(int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MobileNetV2Small"; }
};

// torchvision's block: "conv" = Sequential([Conv2dNormActivation expand,] Conv2dNormActivation depthwise,
// Conv2D project, BatchNorm2D).
class InvertedResidual : public nn::Module {
 public:
  InvertedResidual(int64_t in_channels, int64_t out_channels, int64_t stride, int64_t expand_ratio);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "InvertedResidual"; }
};

class MobileNetV2 : public nn::Module {
 public:
  // width scales every channel count (multiples of 8); the last 1x1 conv keeps 1280 for width <= 1.
  explicit MobileNetV2(int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MobileNetV2"; }
};

}  // namespace qslim::models
