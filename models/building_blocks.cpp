#include "models/building_blocks.h"

#include <cmath>

#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/init.h"
#include "nn/linear.h"

namespace qslim::models {

void check_width(const char* model, double width) {
  QSLIM_CHECK(std::isfinite(width) && width > 0, model, ": width multiplier must be a positive number, got ",
              width);
}

int64_t make_divisible(double v, int64_t divisor) {
  int64_t r = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(r) < 0.9 * v) r += divisor;
  return r;
}

int64_t scale_channels(int64_t c, double width) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(c) * width));
}

nn::ModulePtr make_activation(Act act) {
  switch (act) {
    case Act::ReLU: return std::make_shared<nn::ReLU>();
    case Act::ReLU6: return std::make_shared<nn::ReLU6>();
    case Act::Hardswish: return std::make_shared<nn::Hardswish>();
    case Act::None: return std::make_shared<nn::Identity>();
  }
  QSLIM_FAIL("make_activation: unknown activation kind ", static_cast<int>(act));
}

std::shared_ptr<nn::Sequential> conv_bn_act(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                                            Act act, BnOptions bn) {
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back(std::make_shared<nn::Conv2D>(in, out, kernel, stride, (kernel - 1) / 2, 1, groups, false));
  seq->push_back(std::make_shared<nn::BatchNorm2D>(out, bn.eps, bn.momentum));
  if (act != Act::None) seq->push_back(make_activation(act));
  return seq;
}

namespace {
template <typename M, typename F>
void for_each_of(nn::Module& root, F&& f) {
  for (auto& [name, m] : root.named_modules())
    if (auto* p = dynamic_cast<M*>(m.get())) f(*p);
}
}  // namespace

void init_conv_kaiming_fan_out(nn::Module& root) {
  for_each_of<nn::Conv2D>(root, [](nn::Conv2D& c) {
    nn::init::kaiming_normal_(c.weight(), 0.0, nn::init::FanMode::FanOut, nn::init::Nonlinearity::ReLU);
    if (c.has_bias()) nn::init::zeros_(c.bias());
  });
}

void init_conv_normal(nn::Module& root, double std) {
  for_each_of<nn::Conv2D>(root, [std](nn::Conv2D& c) {
    nn::init::normal_(c.weight(), 0.0, std);
    if (c.has_bias()) nn::init::zeros_(c.bias());
  });
}

void init_linear_normal(nn::Module& root, double std) {
  for_each_of<nn::Linear>(root, [std](nn::Linear& l) {
    nn::init::normal_(l.weight(), 0.0, std);
    if (l.has_bias()) nn::init::zeros_(l.bias());
  });
}

}  // namespace qslim::models
