#include "models/resnet.h"

#include "models/building_blocks.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/residual.h"
#include "nn/sequential.h"

namespace qslim::models {

namespace {
std::shared_ptr<nn::Conv2D> conv3x3(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<nn::Conv2D>(in, out, 3, stride, 1, 1, 1, false);
}
std::shared_ptr<nn::Conv2D> conv1x1(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<nn::Conv2D>(in, out, 1, stride, 0, 1, 1, false);
}
std::shared_ptr<nn::Sequential> projection(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{conv1x1(in, out, stride), std::make_shared<nn::BatchNorm2D>(out)});
}
}  // namespace

// ---------------------------------------------------------------- CIFAR style

CifarBasicBlock::CifarBasicBlock(int64_t in, int64_t out, int64_t stride) {
  register_module("conv1", conv3x3(in, out, stride));
  register_module("bn1", std::make_shared<nn::BatchNorm2D>(out));
  register_module("relu1", std::make_shared<nn::ReLU>());
  register_module("conv2", conv3x3(out, out, 1));
  register_module("bn2", std::make_shared<nn::BatchNorm2D>(out));
  if (stride != 1 || in != out) register_module("short", projection(in, out, stride));
  register_module("add", std::make_shared<nn::Add>());
  register_module("relu2", std::make_shared<nn::ReLU>());
}

Tensor CifarBasicBlock::forward(const Tensor& x) {
  Tensor identity = has_child("short") ? child("short")(x) : x;
  Tensor y = child("relu1")(child("bn1")(child("conv1")(x)));
  y = child("bn2")(child("conv2")(y));
  return child("relu2")(child("add")(y, identity));
}

CifarResNet::CifarResNet(int64_t depth, int64_t in_channels, int64_t num_classes, double width) {
  QSLIM_CHECK(depth >= 8 && (depth - 2) % 6 == 0, "CifarResNet: depth must be 6n+2 with n >= 1 (8, 20, 32, 56, ...), got ",
              depth);
  check_width("CifarResNet", width);
  const int64_t n = (depth - 2) / 6;
  int64_t c = scale_channels(16, width);
  register_module("conv1", conv3x3(in_channels, c, 1));
  register_module("bn1", std::make_shared<nn::BatchNorm2D>(c));
  register_module("relu1", std::make_shared<nn::ReLU>());
  auto layers = register_module("layers", std::make_shared<nn::Sequential>());
  const int64_t stage_channels[3] = {16, 32, 64}, stage_strides[3] = {1, 2, 2};
  for (int s = 0; s < 3; ++s) {
    int64_t out = scale_channels(stage_channels[s], width);
    for (int64_t i = 0; i < n; ++i) {
      layers->push_back(std::make_shared<CifarBasicBlock>(c, out, i == 0 ? stage_strides[s] : 1));
      c = out;
    }
  }
  register_module("pool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("fc", std::make_shared<nn::Linear>(c, num_classes));
}

Tensor CifarResNet::forward(const Tensor& x) {
  Tensor h = child("relu1")(child("bn1")(child("conv1")(x)));
  h = child("pool")(child("layers")(h));
  return child("fc")(h.flatten(1));
}

// ---------------------------------------------------------------- torchvision style

BasicBlock::BasicBlock(int64_t in, int64_t planes, int64_t stride) {
  register_module("conv1", conv3x3(in, planes, stride));
  register_module("bn1", std::make_shared<nn::BatchNorm2D>(planes));
  register_module("relu1", std::make_shared<nn::ReLU>());
  register_module("conv2", conv3x3(planes, planes, 1));
  register_module("bn2", std::make_shared<nn::BatchNorm2D>(planes));
  if (stride != 1 || in != planes * kExpansion) register_module("downsample", projection(in, planes * kExpansion, stride));
  register_module("add", std::make_shared<nn::Add>());
  register_module("relu2", std::make_shared<nn::ReLU>());
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor y = child("relu1")(child("bn1")(child("conv1")(x)));
  y = child("bn2")(child("conv2")(y));
  Tensor identity = has_child("downsample") ? child("downsample")(x) : x;
  return child("relu2")(child("add")(y, identity));
}

Bottleneck::Bottleneck(int64_t in, int64_t planes, int64_t stride) {
  register_module("conv1", conv1x1(in, planes, 1));
  register_module("bn1", std::make_shared<nn::BatchNorm2D>(planes));
  register_module("relu1", std::make_shared<nn::ReLU>());
  register_module("conv2", conv3x3(planes, planes, stride));
  register_module("bn2", std::make_shared<nn::BatchNorm2D>(planes));
  register_module("relu2", std::make_shared<nn::ReLU>());
  register_module("conv3", conv1x1(planes, planes * kExpansion, 1));
  register_module("bn3", std::make_shared<nn::BatchNorm2D>(planes * kExpansion));
  if (stride != 1 || in != planes * kExpansion) register_module("downsample", projection(in, planes * kExpansion, stride));
  register_module("add", std::make_shared<nn::Add>());
  register_module("relu3", std::make_shared<nn::ReLU>());
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor y = child("relu1")(child("bn1")(child("conv1")(x)));
  y = child("relu2")(child("bn2")(child("conv2")(y)));
  y = child("bn3")(child("conv3")(y));
  Tensor identity = has_child("downsample") ? child("downsample")(x) : x;
  return child("relu3")(child("add")(y, identity));
}

ResNet::ResNet(Block block, const std::vector<int64_t>& blocks_per_stage, int64_t in_channels, int64_t num_classes,
               double width) {
  QSLIM_CHECK(blocks_per_stage.size() == 4, "ResNet: expected 4 stages, got ", blocks_per_stage.size());
  for (int64_t n : blocks_per_stage) QSLIM_CHECK(n >= 1, "ResNet: every stage needs at least one block, got ", n);
  check_width("ResNet", width);
  const int64_t expansion = block == Block::Basic ? BasicBlock::kExpansion : Bottleneck::kExpansion;
  int64_t c = make_divisible(64 * width);
  register_module("conv1", conv3x3(in_channels, c, 1));
  register_module("bn1", std::make_shared<nn::BatchNorm2D>(c));
  register_module("relu", std::make_shared<nn::ReLU>());
  const int64_t stage_planes[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    auto stage = register_module("layer" + std::to_string(s + 1), std::make_shared<nn::Sequential>());
    int64_t planes = make_divisible(stage_planes[s] * width);
    for (int64_t i = 0; i < blocks_per_stage[s]; ++i) {
      int64_t stride = (s > 0 && i == 0) ? 2 : 1;
      if (block == Block::Basic)
        stage->push_back(std::make_shared<BasicBlock>(c, planes, stride));
      else
        stage->push_back(std::make_shared<Bottleneck>(c, planes, stride));
      c = planes * expansion;
    }
  }
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2D>(1));
  register_module("fc", std::make_shared<nn::Linear>(c, num_classes));
  init_conv_kaiming_fan_out(*this);
}

Tensor ResNet::forward(const Tensor& x) {
  Tensor h = child("relu")(child("bn1")(child("conv1")(x)));
  for (const char* stage : {"layer1", "layer2", "layer3", "layer4"}) h = child(stage)(h);
  return child("fc")(child("avgpool")(h).flatten(1));
}

nn::ModulePtr resnet18(int64_t in_channels, int64_t num_classes, double width) {
  return std::make_shared<ResNet>(ResNet::Block::Basic, std::vector<int64_t>{2, 2, 2, 2}, in_channels, num_classes,
                                  width);
}
nn::ModulePtr resnet34(int64_t in_channels, int64_t num_classes, double width) {
  return std::make_shared<ResNet>(ResNet::Block::Basic, std::vector<int64_t>{3, 4, 6, 3}, in_channels, num_classes,
                                  width);
}
nn::ModulePtr resnet50(int64_t in_channels, int64_t num_classes, double width) {
  return std::make_shared<ResNet>(ResNet::Block::Bottleneck, std::vector<int64_t>{3, 4, 6, 3}, in_channels,
                                  num_classes, width);
}
nn::ModulePtr resnet101(int64_t in_channels, int64_t num_classes, double width) {
  return std::make_shared<ResNet>(ResNet::Block::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, in_channels,
                                  num_classes, width);
}

}  // namespace qslim::models
