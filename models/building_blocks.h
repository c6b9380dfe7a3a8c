// Pieces shared by the model zoo: channel rounding for width multipliers, torchvision's
// Conv2dNormActivation (children 0 = conv, 1 = batch norm, 2 = activation) and weight initialisers.
#pragma once
#include <cstdint>
#include <memory>

#include "nn/module.h"
#include "nn/sequential.h"

namespace qslim::models {

// Throws unless width is a positive finite number; `model` names the caller in the message.
void check_width(const char* model, double width);

// torchvision's _make_divisible: v rounded to the nearest multiple of divisor, at least divisor,
// and never more than 10% below v.
int64_t make_divisible(double v, int64_t divisor = 8);

// c * width rounded to the nearest integer, at least 1 (width 1 leaves c unchanged).
int64_t scale_channels(int64_t c, double width);

enum class Act { None, ReLU, ReLU6, Hardswish };
nn::ModulePtr make_activation(Act act);

struct BnOptions {
  double eps = 1e-5;
  double momentum = 0.1;
};

// Sequential(Conv2D(k x k, padding (k-1)/2, no bias), BatchNorm2D[, activation]).
std::shared_ptr<nn::Sequential> conv_bn_act(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                                            Act act, BnOptions bn = {});

// torchvision's initialisation of its classification models.
// Conv2D weights ~ kaiming_normal(fan_out, relu gain), biases 0.
void init_conv_kaiming_fan_out(nn::Module& root);
// Conv2D and Linear weights ~ N(0, std), biases 0.
void init_conv_normal(nn::Module& root, double std);
void init_linear_normal(nn::Module& root, double std);

}  // namespace qslim::models
