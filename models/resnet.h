// ResNets for small (28x28, 32x32) inputs.
//
// CifarResNet: He et al. 2016 sec. 4.2, layer for layer ResNetC of shared/peer/torch_models.py
// (depth 6n+2: 3 stages of n basic blocks, 16/32/64 channels, projection shortcuts), with its names:
// conv1, bn1, relu1, layers.<i>.{conv1,bn1,relu1,conv2,bn2,short.0,short.1,add,relu2}, pool, fc.
//
// ResNet: torchvision's resnet18/34/50/101 and names (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0,
// fc, ...) with a small-input stem: 3x3 conv stride 1 and no max pool, so 28x28 runs at 28/14/7/4.
// Blocks use separate ReLU modules (relu1, relu2[, relu3]) and an Add so quantization can observe each.
#pragma once
#include <vector>

#include "nn/module.h"

namespace qslim::models {

class CifarBasicBlock : public nn::Module {
 public:
  CifarBasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "CifarBasicBlock"; }
};

class CifarResNet : public nn::Module {
 public:
  // depth = 6n + 2 (8, 20, 32, 44, 56, 110, ...); width scales the 16/32/64 channels.
  explicit CifarResNet(int64_t depth = 20, int64_t in_channels = 1, int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "CifarResNet"; }
};

class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in_channels, int64_t planes, int64_t stride);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BasicBlock"; }
};

class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  // torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv.
  Bottleneck(int64_t in_channels, int64_t planes, int64_t stride);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Bottleneck"; }
};

class ResNet : public nn::Module {
 public:
  enum class Block { Basic, Bottleneck };
  // blocks_per_stage: {2,2,2,2} resnet18, {3,4,6,3} resnet34/50, {3,4,23,3} resnet101.
  // width scales the 64/128/256/512 stage widths (rounded to multiples of 8).
  ResNet(Block block, const std::vector<int64_t>& blocks_per_stage, int64_t in_channels = 3,
         int64_t num_classes = 10, double width = 1.0);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ResNet"; }
};

nn::ModulePtr resnet18(int64_t in_channels, int64_t num_classes, double width = 1.0);
nn::ModulePtr resnet34(int64_t in_channels, int64_t num_classes, double width = 1.0);
nn::ModulePtr resnet50(int64_t in_channels, int64_t num_classes, double width = 1.0);
nn::ModulePtr resnet101(int64_t in_channels, int64_t num_classes, double width = 1.0);

}  // namespace qslim::models
