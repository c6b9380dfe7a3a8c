// GoogLeNet / Inception v1 (Szegedy et al. 2015) with torchvision's structure and names: conv1,
// maxpool1, conv2, conv3, inception3a..5b (branch1..branch4 of BasicConv2d conv/bn/relu; torchvision's
// 3x3 "5x5" branch), maxpool3, maxpool4, avgpool, dropout, fc; no auxiliary classifiers.
// Small-input stem: conv1 is 3x3 stride 1 and maxpool2 is dropped, so 28x28 runs the inception stages at
// 14/7/4 (32x32 at 16/8/4). Branch outputs are joined by a Concat module ("cat").
#pragma once
#include "nn/module.h"

namespace qslim::models {

class BasicConv2d : public nn::Module {
 public:
  BasicConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BasicConv2d"; }
};

class Inception : public nn::Module {
 public:
  Inception(int64_t in_channels, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3, int64_t ch5x5red, int64_t ch5x5,
            int64_t pool_proj);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Inception"; }
  int64_t out_channels() const { return out_; }

 private:
  int64_t out_;
};

class GoogLeNet : public nn::Module {
 public:
  // width scales every channel count (multiples of 8).
  explicit GoogLeNet(int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GoogLeNet"; }
};

}  // namespace qslim::models
