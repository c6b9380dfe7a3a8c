#include "models/lenet.h"

#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/pooling.h"

namespace qslim::models {

LeNet5::LeNet5(int64_t in_channels, int64_t num_classes, int64_t image_size) {
  // 28x28 -> conv(pad 2) 28 -> pool 14 -> conv 10 -> pool 5; 32x32 inputs give 6x6.
  int64_t s = ((image_size / 2) - 4) / 2;
  QSLIM_CHECK(s >= 1, "LeNet5: image_size ", image_size, " is too small (needs at least 12)");
  register_module("conv1", std::make_shared<nn::Conv2D>(in_channels, 6, 5, 1, 2));
  register_module("relu1", std::make_shared<nn::ReLU>());
  register_module("pool1", std::make_shared<nn::MaxPool2D>(2));
  register_module("conv2", std::make_shared<nn::Conv2D>(6, 16, 5));
  register_module("relu2", std::make_shared<nn::ReLU>());
  register_module("pool2", std::make_shared<nn::MaxPool2D>(2));
  register_module("fc1", std::make_shared<nn::Linear>(16 * s * s, 120));
  register_module("relu3", std::make_shared<nn::ReLU>());
  register_module("fc2", std::make_shared<nn::Linear>(120, 84));
  register_module("relu4", std::make_shared<nn::ReLU>());
  register_module("fc3", std::make_shared<nn::Linear>(84, num_classes));
}

Tensor LeNet5::forward(const Tensor& x) {
  Tensor h = child("pool1")(child("relu1")(child("conv1")(x)));
  h = child("pool2")(child("relu2")(child("conv2")(h)));
  h = h.flatten(1);
  h = child("relu3")(child("fc1")(h));
  h = child("relu4")(child("fc2")(h));
  return child("fc3")(h);
}

}  // namespace qslim::models
