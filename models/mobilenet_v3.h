// MobileNetV3 small and large (Howard et al. 2019) with torchvision's configurations and names:
// features.0.{0,1,2} (stem), features.<i>.block.<k> (expand, depthwise, SqueezeExcitation, project),
// features.<last> (1x1 conv to 6x channels), avgpool, classifier.{0,1,2,3}. Hardswish/ReLU activations,
// BatchNorm eps 1e-3 momentum 0.01. Strides reduced for small inputs: the stem and the first stride-2
// block have stride 1, so 28x28 runs at 28/14/7/4.
#pragma once
#include "nn/module.h"

namespace qslim::models {

struct MobileNetV3BlockCfg {
  int64_t in, kernel, expanded, out;
  bool use_se, use_hardswish;
  int64_t stride;
};

class InvertedResidualV3 : public nn::Module {
 public:
  explicit InvertedResidualV3(const MobileNetV3BlockCfg& cfg);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "InvertedResidualV3"; }
};

class MobileNetV3 : public nn::Module {
 public:
  enum class Arch { Small, Large };
  // width scales every channel count (rounded to multiples of 8, as torchvision's width_mult).
  explicit MobileNetV3(Arch arch, int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MobileNetV3"; }
};

}  // namespace qslim::models
