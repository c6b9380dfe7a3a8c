// Squeeze-and-excitation (Hu et al. 2018) as torchvision's SqueezeExcitation used by MobileNetV3:
// x * scale_activation(fc2(activation(fc1(avgpool(x))))), fc1/fc2 being 1x1 convs with bias,
// activation ReLU and scale_activation Hardsigmoid. The final product is a Multiply module ("mul")
// so quantization can observe it like an Add.
#pragma once
#include "nn/module.h"

namespace qslim::models {

// Product of two inputs with NumPy broadcasting (here [N, C, H, W] * [N, C, 1, 1]); differentiable.
class Multiply : public nn::Module {
 public:
  using Module::forward;
  Tensor forward(const std::vector<Tensor>& xs) override;
  std::string type_name() const override { return "Multiply"; }
};

class SqueezeExcitation : public nn::Module {
 public:
  SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SqueezeExcitation"; }
};

}  // namespace qslim::models
