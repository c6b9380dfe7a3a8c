#include "models/mobilenet_v2.h"

#include <algorithm>
#include <cmath>

#include "models/building_blocks.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/residual.h"

namespace qslim::models {

namespace {
struct StageCfg {
  int64_t t, c, n, s;  // expansion, output channels, blocks, stride of the first block
};

void check_block(const char* type, int64_t in, int64_t out, int64_t stride, int64_t t) {
  QSLIM_CHECK(in > 0 && out > 0 && t >= 1 && (stride == 1 || stride == 2), type, ": invalid block (in ", in,
              ", out ", out, ", stride ", stride, ", expansion ", t, "); need positive channels, expansion >= 1, stride 1 or 2");
}
}  // namespace

// ---------------------------------------------------------------- MobileNetV2S

InvRes::InvRes(int64_t in, int64_t out, int64_t stride, int64_t t) {
  check_block("InvRes", in, out, stride, t);
  const int64_t hid = in * t;
  auto conv = register_module("conv", std::make_shared<nn::Sequential>());
  if (t != 1) {
    conv->push_back(std::make_shared<nn::Conv2D>(in, hid, 1, 1, 0, 1, 1, false));
    conv->push_back(std::make_shared<nn::BatchNorm2D>(hid));
    conv->push_back(std::make_shared<nn::ReLU6>());
  }
  conv->push_back(std::make_shared<nn::Conv2D>(hid, hid, 3, stride, 1, 1, hid, false));
  conv->push_back(std::make_shared<nn::BatchNorm2D>(hid));
  conv->push_back(std::make_shared<nn::ReLU6>());
  conv->push_back(std::make_shared<nn::Conv2D>(hid, out, 1, 1, 0, 1, 1, false));
  conv->push_back(std::make_shared<nn::BatchNorm2D>(out));
  if (stride == 1 && in == out) register_module("add", std::make_shared<nn::Add>());
}

Tensor InvRes::forward(const Tensor& x) {
  Tensor y = child("conv")(x);
  return has_child("add") ? child("add")(x, y) : y;
}

MobileNetV2Small::MobileNetV2Small(int64_t in_channels, int64_t num_classes, double width) {
  check_width("MobileNetV2Small", width);
  const StageCfg cfg[] = {{1, 8, 1, 1}, {6, 12, 2, 2}, {6, 16, 2, 2}, {6, 32, 2, 1}, {6, 48, 1, 1}};
  int64_t c = scale_channels(16, width);
  register_module("stem", conv_bn_act(in_channels, c, 3, 1, 1, Act::ReLU6));
  auto blocks = register_module("blocks", std::make_shared<nn::Sequential>());
  for (const StageCfg& st : cfg) {
    int64_t out = scale_channels(st.c, width);
    for (int64_t i = 0; i < st.n; ++i) {
      blocks->push_back(std::make_shared<InvRes>(c, out, i == 0 ? st.s : 1, st.t));
      c = out;
    }
  }
  const int64_t last = scale_channels(320, width);
  register_module("head", conv_bn_act(c, last, 1, 1, 1, Act::ReLU6));
  register_module("pool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("fc", std::make_shared<nn::Linear>(last, num_classes));
}

Tensor MobileNetV2Small::forward(const Tensor& x) {
  Tensor h = child("head")(child("blocks")(child("stem")(x)));
  return child("fc")(child("pool")(h).flatten(1));
}

// ---------------------------------------------------------------- torchvision MobileNetV2

InvertedResidual::InvertedResidual(int64_t in, int64_t out, int64_t stride, int64_t t) {
  check_block("InvertedResidual", in, out, stride, t);
  const int64_t hid = in * t;
  auto conv = register_module("conv", std::make_shared<nn::Sequential>());
  if (t != 1) conv->push_back(conv_bn_act(in, hid, 1, 1, 1, Act::ReLU6));
  conv->push_back(conv_bn_act(hid, hid, 3, stride, hid, Act::ReLU6));
  conv->push_back(std::make_shared<nn::Conv2D>(hid, out, 1, 1, 0, 1, 1, false));
  conv->push_back(std::make_shared<nn::BatchNorm2D>(out));
  if (stride == 1 && in == out) register_module("add", std::make_shared<nn::Add>());
}

Tensor InvertedResidual::forward(const Tensor& x) {
  Tensor y = child("conv")(x);
  return has_child("add") ? child("add")(x, y) : y;
}

MobileNetV2::MobileNetV2(int64_t in_channels, int64_t num_classes, double width) {
  check_width("MobileNetV2", width);
  // torchvision's table; the stem and the 24-channel stage have stride 2 there.
  const StageCfg cfg[] = {{1, 16, 1, 1}, {6, 24, 2, 1},  {6, 32, 3, 2},  {6, 64, 4, 2},
                          {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  auto features = register_module("features", std::make_shared<nn::Sequential>());
  int64_t c = make_divisible(32 * width);
  features->push_back(conv_bn_act(in_channels, c, 3, 1, 1, Act::ReLU6));
  for (const StageCfg& st : cfg) {
    int64_t out = make_divisible(st.c * width);
    for (int64_t i = 0; i < st.n; ++i) {
      features->push_back(std::make_shared<InvertedResidual>(c, out, i == 0 ? st.s : 1, st.t));
      c = out;
    }
  }
  const int64_t last = make_divisible(1280 * std::max(1.0, width));
  features->push_back(conv_bn_act(c, last, 1, 1, 1, Act::ReLU6));
  register_module("pool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  auto classifier = register_module("classifier", std::make_shared<nn::Sequential>());
  classifier->push_back(std::make_shared<nn::Dropout>(0.2));
  classifier->push_back(std::make_shared<nn::Linear>(last, num_classes));
  init_conv_kaiming_fan_out(*this);
  init_linear_normal(*this, 0.01);
}

Tensor MobileNetV2::forward(const Tensor& x) {
  return child("classifier")(child("pool")(child("features")(x)).flatten(1));
}

}  // namespace qslim::models
