#include "models/vgg.h"

#include <vector>

#include "models/building_blocks.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/pooling.h"

namespace qslim::models {

namespace {
constexpr int64_t M = 0;  // max pool marker

const std::vector<int64_t>& vgg_cfg(int64_t depth) {
  static const std::vector<int64_t> a = {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
  static const std::vector<int64_t> b = {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
  static const std::vector<int64_t> d = {64,  64,  M,   128, 128, M,   256, 256, 256,
                                         M,   512, 512, 512, M,   512, 512, 512, M};
  static const std::vector<int64_t> e = {64,  64,  M,   128, 128, M,   256, 256, 256, 256, M,
                                         512, 512, 512, 512, M,   512, 512, 512, 512, M};
  switch (depth) {
    case 11: return a;
    case 13: return b;
    case 16: return d;
    case 19: return e;
  }
  QSLIM_FAIL("VGG: depth must be 11, 13, 16 or 19, got ", depth);
}
}  // namespace

VGG::VGG(int64_t depth, int64_t in_channels, int64_t num_classes, double width) {
  check_width("VGG", width);
  const auto& cfg = vgg_cfg(depth);
  auto features = register_module("features", std::make_shared<nn::Sequential>());
  int64_t c = in_channels, pools = 0;
  for (int64_t v : cfg) {
    if (v == M) {
      if (++pools <= 3)
        features->push_back(std::make_shared<nn::MaxPool2D>(2));
      else
        features->push_back(std::make_shared<nn::Identity>());
      continue;
    }
    int64_t out = make_divisible(v * width);
    features->push_back(std::make_shared<nn::Conv2D>(c, out, 3, 1, 1));
    features->push_back(std::make_shared<nn::BatchNorm2D>(out));
    features->push_back(std::make_shared<nn::ReLU>());
    c = out;
  }
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  const int64_t hidden = make_divisible(512 * width);
  auto classifier = register_module("classifier", std::make_shared<nn::Sequential>());
  classifier->push_back(std::make_shared<nn::Linear>(c, hidden));
  classifier->push_back(std::make_shared<nn::ReLU>());
  classifier->push_back(std::make_shared<nn::Dropout>(0.5));
  classifier->push_back(std::make_shared<nn::Linear>(hidden, hidden));
  classifier->push_back(std::make_shared<nn::ReLU>());
  classifier->push_back(std::make_shared<nn::Dropout>(0.5));
  classifier->push_back(std::make_shared<nn::Linear>(hidden, num_classes));
  init_conv_kaiming_fan_out(*this);
  init_linear_normal(*this, 0.01);
}

Tensor VGG::forward(const Tensor& x) {
  return child("classifier")(child("avgpool")(child("features")(x)).flatten(1));
}

}  // namespace qslim::models
