// MobileNetV1 (Howard et al. 2017): a 3x3 conv then 13 depthwise-separable blocks
// (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU), average pool, fc.
// Small-input strides: stem stride 1 and the first 1024-channel block stride 1, so 28x28 runs at
// 28/14/7/4 (4 stride-2 stages of the original become 3). Names: features.0.{0,1,2} (stem),
// features.<i>.dw.{0,1,2}, features.<i>.pw.{0,1,2}, avgpool, fc.
#pragma once
#include "nn/module.h"

namespace qslim::models {

class DepthwiseSeparable : public nn::Module {
 public:
  DepthwiseSeparable(int64_t in_channels, int64_t out_channels, int64_t stride);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "DepthwiseSeparable"; }
};

class MobileNetV1 : public nn::Module {
 public:
  // width scales every channel count (rounded to multiples of 8).
  explicit MobileNetV1(int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MobileNetV1"; }
};

}  // namespace qslim::models
