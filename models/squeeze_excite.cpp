#include "models/squeeze_excite.h"

#include "autograd/ops_arith.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/pooling.h"

namespace qslim::models {

Tensor Multiply::forward(const std::vector<Tensor>& xs) {
  QSLIM_CHECK(xs.size() == 2, "Multiply: expected 2 inputs, got ", xs.size());
  return mul(xs[0], xs[1]);
}

SqueezeExcitation::SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels) {
  QSLIM_CHECK(input_channels > 0 && squeeze_channels > 0, "SqueezeExcitation: channels must be positive, got input ",
              input_channels, " squeeze ", squeeze_channels);
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("fc1", std::make_shared<nn::Conv2D>(input_channels, squeeze_channels, 1));
  register_module("fc2", std::make_shared<nn::Conv2D>(squeeze_channels, input_channels, 1));
  register_module("activation", std::make_shared<nn::ReLU>());
  register_module("scale_activation", std::make_shared<nn::Hardsigmoid>());
  register_module("mul", std::make_shared<Multiply>());
}

Tensor SqueezeExcitation::forward(const Tensor& x) {
  Tensor s = child("activation")(child("fc1")(child("avgpool")(x)));
  s = child("scale_activation")(child("fc2")(s));
  return child("mul")(x, s);
}

}  // namespace qslim::models
