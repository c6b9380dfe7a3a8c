#include "models/googlenet.h"

#include "models/building_blocks.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/residual.h"
#include "nn/sequential.h"

namespace qslim::models {

BasicConv2d::BasicConv2d(int64_t in, int64_t out, int64_t k, int64_t stride) {
  register_module("conv", std::make_shared<nn::Conv2D>(in, out, k, stride, (k - 1) / 2, 1, 1, false));
  register_module("bn", std::make_shared<nn::BatchNorm2D>(out, 1e-3));
  register_module("relu", std::make_shared<nn::ReLU>());
}

Tensor BasicConv2d::forward(const Tensor& x) { return child("relu")(child("bn")(child("conv")(x))); }

Inception::Inception(int64_t in, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3, int64_t ch5x5red, int64_t ch5x5,
                     int64_t pool_proj)
    : out_(ch1x1 + ch3x3 + ch5x5 + pool_proj) {
  using nn::Sequential;
  register_module("branch1", std::make_shared<BasicConv2d>(in, ch1x1, 1));
  register_module("branch2", std::make_shared<Sequential>(std::initializer_list<nn::ModulePtr>{
                                 std::make_shared<BasicConv2d>(in, ch3x3red, 1),
                                 std::make_shared<BasicConv2d>(ch3x3red, ch3x3, 3)}));
  register_module("branch3", std::make_shared<Sequential>(std::initializer_list<nn::ModulePtr>{
                                 std::make_shared<BasicConv2d>(in, ch5x5red, 1),
                                 std::make_shared<BasicConv2d>(ch5x5red, ch5x5, 3)}));
  register_module("branch4", std::make_shared<Sequential>(std::initializer_list<nn::ModulePtr>{
                                 std::make_shared<nn::MaxPool2D>(3, 1, 1),
                                 std::make_shared<BasicConv2d>(in, pool_proj, 1)}));
  register_module("cat", std::make_shared<nn::Concat>(1));
}

Tensor Inception::forward(const Tensor& x) {
  return child("cat")(std::vector<Tensor>{child("branch1")(x), child("branch2")(x), child("branch3")(x),
                                          child("branch4")(x)});
}

GoogLeNet::GoogLeNet(int64_t in_channels, int64_t num_classes, double width) {
  check_width("GoogLeNet", width);
  auto w = [width](int64_t c) { return make_divisible(c * width); };
  register_module("conv1", std::make_shared<BasicConv2d>(in_channels, w(64), 3));
  register_module("maxpool1", std::make_shared<nn::MaxPool2D>(3, 2, 1));
  register_module("conv2", std::make_shared<BasicConv2d>(w(64), w(64), 1));
  register_module("conv3", std::make_shared<BasicConv2d>(w(64), w(192), 3));
  int64_t c = w(192);
  // torchvision's table: name, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection.
  struct Cfg {
    const char* name;
    int64_t a, b, c, d, e, f;
  };
  const Cfg table[] = {{"inception3a", 64, 96, 128, 16, 32, 32},     {"inception3b", 128, 128, 192, 32, 96, 64},
                       {"maxpool3", 0, 0, 0, 0, 0, 0},               {"inception4a", 192, 96, 208, 16, 48, 64},
                       {"inception4b", 160, 112, 224, 24, 64, 64},   {"inception4c", 128, 128, 256, 24, 64, 64},
                       {"inception4d", 112, 144, 288, 32, 64, 64},   {"inception4e", 256, 160, 320, 32, 128, 128},
                       {"maxpool4", 0, 0, 0, 0, 0, 0},               {"inception5a", 256, 160, 320, 32, 128, 128},
                       {"inception5b", 384, 192, 384, 48, 128, 128}};
  for (const Cfg& t : table) {
    if (t.a == 0) {
      register_module(t.name, std::make_shared<nn::MaxPool2D>(3, 2, 1));
      continue;
    }
    auto inc = register_module(t.name, std::make_shared<Inception>(c, w(t.a), w(t.b), w(t.c), w(t.d), w(t.e), w(t.f)));
    c = inc->out_channels();
  }
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("dropout", std::make_shared<nn::Dropout>(0.2));
  register_module("fc", std::make_shared<nn::Linear>(c, num_classes));
  // torchvision draws conv and fc weights from N(0, 0.01) truncated at +-2 (never reached at that std).
  init_conv_normal(*this, 0.01);
  init_linear_normal(*this, 0.01);
}

Tensor GoogLeNet::forward(const Tensor& x) {
  Tensor h = child("maxpool1")(child("conv1")(x));
  h = child("conv3")(child("conv2")(h));
  for (const char* name : {"inception3a", "inception3b", "maxpool3", "inception4a", "inception4b", "inception4c",
                           "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b"})
    h = child(name)(h);
  h = child("dropout")(child("avgpool")(h).flatten(1));
  return child("fc")(h);
}

}  // namespace qslim::models
