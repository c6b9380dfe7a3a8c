#include "models/mobilenet_v1.h"

#include "models/building_blocks.h"
#include "nn/linear.h"
#include "nn/pooling.h"

namespace qslim::models {

DepthwiseSeparable::DepthwiseSeparable(int64_t in, int64_t out, int64_t stride) {
  register_module("dw", conv_bn_act(in, in, 3, stride, in, Act::ReLU));
  register_module("pw", conv_bn_act(in, out, 1, 1, 1, Act::ReLU));
}

Tensor DepthwiseSeparable::forward(const Tensor& x) { return child("pw")(child("dw")(x)); }

MobileNetV1::MobileNetV1(int64_t in_channels, int64_t num_classes, double width) {
  check_width("MobileNetV1", width);
  struct Cfg {
    int64_t out, stride;
  };
  // The original strides are {1,2,1,2,1,2,1,1,1,1,1,2,1} after a stride-2 stem.
  const Cfg cfg[] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2},  {512, 1},
                     {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 1}, {1024, 1}};
  auto features = register_module("features", std::make_shared<nn::Sequential>());
  int64_t c = make_divisible(32 * width);
  features->push_back(conv_bn_act(in_channels, c, 3, 1, 1, Act::ReLU));
  for (const Cfg& b : cfg) {
    int64_t out = make_divisible(b.out * width);
    features->push_back(std::make_shared<DepthwiseSeparable>(c, out, b.stride));
    c = out;
  }
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("fc", std::make_shared<nn::Linear>(c, num_classes));
  init_conv_kaiming_fan_out(*this);
}

Tensor MobileNetV1::forward(const Tensor& x) {
  return child("fc")(child("avgpool")(child("features")(x)).flatten(1));
}

}  // namespace qslim::models
