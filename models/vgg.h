// VGG-11/16/19 with batch norm (Simonyan & Zisserman 2015), torchvision's vgg*_bn names:
// features.<i> (conv, bn, relu triples and pools at torchvision's indices), avgpool, classifier.{0,3,6}.
// Adapted to small inputs: the 4th and 5th max pools are Identity (indices unchanged), so 28x28 runs at
// 28/14/7/3 and 32x32 at 32/16/8/4; avgpool pools to 1x1 and the classifier is
// Linear(512w, 512w)-ReLU-Dropout-Linear(512w, 512w)-ReLU-Dropout-Linear(512w, classes).
#pragma once
#include "nn/module.h"

namespace qslim::models {

class VGG : public nn::Module {
 public:
  // depth 11, 13, 16 or 19; width scales every channel count (multiples of 8).
  explicit VGG(int64_t depth = 16, int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "VGG"; }
};

}  // namespace qslim::models
