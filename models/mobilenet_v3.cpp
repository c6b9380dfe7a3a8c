#include "models/mobilenet_v3.h"

#include <vector>

#include "models/building_blocks.h"
#include "models/squeeze_excite.h"
#include "nn/activation.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/residual.h"

namespace qslim::models {

namespace {
constexpr BnOptions kBn{1e-3, 0.01};
}

InvertedResidualV3::InvertedResidualV3(const MobileNetV3BlockCfg& c) {
  QSLIM_CHECK(c.in > 0 && c.expanded > 0 && c.out > 0 && (c.kernel == 3 || c.kernel == 5) &&
                  (c.stride == 1 || c.stride == 2),
              "InvertedResidualV3: invalid block (in ", c.in, ", kernel ", c.kernel, ", expanded ", c.expanded,
              ", out ", c.out, ", stride ", c.stride, ")");
  const Act act = c.use_hardswish ? Act::Hardswish : Act::ReLU;
  auto block = register_module("block", std::make_shared<nn::Sequential>());
  if (c.expanded != c.in) block->push_back(conv_bn_act(c.in, c.expanded, 1, 1, 1, act, kBn));
  block->push_back(conv_bn_act(c.expanded, c.expanded, c.kernel, c.stride, c.expanded, act, kBn));
  if (c.use_se) block->push_back(std::make_shared<SqueezeExcitation>(c.expanded, make_divisible(c.expanded / 4)));
  block->push_back(conv_bn_act(c.expanded, c.out, 1, 1, 1, Act::None, kBn));
  if (c.stride == 1 && c.in == c.out) register_module("add", std::make_shared<nn::Add>());
}

Tensor InvertedResidualV3::forward(const Tensor& x) {
  Tensor y = child("block")(x);
  return has_child("add") ? child("add")(x, y) : y;
}

MobileNetV3::MobileNetV3(Arch arch, int64_t in_channels, int64_t num_classes, double width) {
  check_width("MobileNetV3", width);
  constexpr bool RE = false, HS = true;
  // torchvision's tables (in, kernel, expanded, out, SE, hardswish, stride), except that the blocks
  // marked /* 2 */ have stride 2 there (as has the stem).
  const std::vector<MobileNetV3BlockCfg> large = {
      {16, 3, 16, 16, false, RE, 1},   {16, 3, 64, 24, false, RE, 1} /* 2 */, {24, 3, 72, 24, false, RE, 1},
      {24, 5, 72, 40, true, RE, 2},    {40, 5, 120, 40, true, RE, 1},          {40, 5, 120, 40, true, RE, 1},
      {40, 3, 240, 80, false, HS, 2},  {80, 3, 200, 80, false, HS, 1},         {80, 3, 184, 80, false, HS, 1},
      {80, 3, 184, 80, false, HS, 1},  {80, 3, 480, 112, true, HS, 1},         {112, 3, 672, 112, true, HS, 1},
      {112, 5, 672, 160, true, HS, 2}, {160, 5, 960, 160, true, HS, 1},        {160, 5, 960, 160, true, HS, 1}};
  const std::vector<MobileNetV3BlockCfg> small = {
      {16, 3, 16, 16, true, RE, 1} /* 2 */, {16, 3, 72, 24, false, RE, 2},  {24, 3, 88, 24, false, RE, 1},
      {24, 5, 96, 40, true, HS, 2},         {40, 5, 240, 40, true, HS, 1},  {40, 5, 240, 40, true, HS, 1},
      {40, 5, 120, 48, true, HS, 1},        {48, 5, 144, 48, true, HS, 1},  {48, 5, 288, 96, true, HS, 2},
      {96, 5, 576, 96, true, HS, 1},        {96, 5, 576, 96, true, HS, 1}};
  const auto& table = arch == Arch::Large ? large : small;
  const int64_t last_channel = make_divisible((arch == Arch::Large ? 1280 : 1024) * width);

  auto features = register_module("features", std::make_shared<nn::Sequential>());
  features->push_back(conv_bn_act(in_channels, make_divisible(table[0].in * width), 3, 1, 1, Act::Hardswish, kBn));
  for (MobileNetV3BlockCfg c : table) {
    c.in = make_divisible(c.in * width);
    c.expanded = make_divisible(c.expanded * width);
    c.out = make_divisible(c.out * width);
    features->push_back(std::make_shared<InvertedResidualV3>(c));
  }
  const int64_t last_in = make_divisible(table.back().out * width), last_out = 6 * last_in;
  features->push_back(conv_bn_act(last_in, last_out, 1, 1, 1, Act::Hardswish, kBn));
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  auto classifier = register_module("classifier", std::make_shared<nn::Sequential>());
  classifier->push_back(std::make_shared<nn::Linear>(last_out, last_channel));
  classifier->push_back(std::make_shared<nn::Hardswish>());
  classifier->push_back(std::make_shared<nn::Dropout>(0.2));
  classifier->push_back(std::make_shared<nn::Linear>(last_channel, num_classes));
  init_conv_kaiming_fan_out(*this);
  init_linear_normal(*this, 0.01);
}

Tensor MobileNetV3::forward(const Tensor& x) {
  return child("classifier")(child("avgpool")(child("features")(x)).flatten(1));
}

}  // namespace qslim::models
