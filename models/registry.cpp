#include "models/registry.h"

#include <algorithm>
#include <sstream>

#include "models/googlenet.h"
#include "models/lenet.h"
#include "models/mobilenet_v1.h"
#include "models/mobilenet_v2.h"
#include "models/mobilenet_v3.h"
#include "models/resnet.h"
#include "models/vgg.h"

namespace qslim::models {

ModelArgs ModelArgs::parse(const std::string& spec) {
  ModelArgs a;
  auto colon = spec.find(':');
  a.name_ = spec.substr(0, colon);
  if (colon == std::string::npos) return a;
  std::stringstream ss(spec.substr(colon + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    QSLIM_CHECK(eq != std::string::npos && eq > 0, "model spec '", spec, "': argument '", item,
                "' is not key=value");
    a.values_[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return a;
}

int64_t ModelArgs::get_int(const std::string& key, int64_t def) {
  used_[key] = true;
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(it->second, &pos);
  } catch (...) {
    pos = 0;
  }
  QSLIM_CHECK(pos == it->second.size() && pos > 0, "model '", name_, "': argument ", key, "=", it->second,
              " is not an integer");
  return v;
}

double ModelArgs::get_double(const std::string& key, double def) {
  used_[key] = true;
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(it->second, &pos);
  } catch (...) {
    pos = 0;
  }
  QSLIM_CHECK(pos == it->second.size() && pos > 0, "model '", name_, "': argument ", key, "=", it->second,
              " is not a number");
  return v;
}

void ModelArgs::finish(const std::vector<std::string>& allowed) const {
  for (const auto& [k, v] : values_) {
    if (used_.count(k)) continue;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    QSLIM_FAIL("model '", name_, "': unknown argument '", k, "' (allowed: ", list, ")");
  }
}

namespace {

using Builder = std::function<nn::ModulePtr(int64_t in_channels, int64_t num_classes, double width)>;

// A registry entry taking in_channels, num_classes and width (defaults 1, 10, 1.0).
ModelInfo entry(const std::string& name, const std::string& description, Builder build) {
  return {name, description, [build](ModelArgs& a) -> nn::ModulePtr {
            int64_t in = a.get_int("in_channels", 1), classes = a.get_int("num_classes", 10);
            double width = a.get_double("width", 1.0);
            a.finish({"in_channels", "num_classes", "width"});
            QSLIM_CHECK(in > 0 && classes > 0, "model '", a.name(), "': in_channels (", in, ") and num_classes (",
                        classes, ") must be positive");
            return build(in, classes, width);
          },
          {"in_channels", "num_classes", "width"}};
}

template <typename M, typename... Pre>
Builder simple(Pre... pre) {
  return [=](int64_t in, int64_t classes, double width) -> nn::ModulePtr {
    return std::make_shared<M>(pre..., in, classes, width);
  };
}

}  // namespace

const std::vector<ModelInfo>& model_registry() {
  using Arch = MobileNetV3::Arch;
  static const std::vector<ModelInfo> registry = {
      {"lenet", "LeNet-5 (conv5x5 x2, fc 120-84-classes)",
       [](ModelArgs& a) -> nn::ModulePtr {
         int64_t in = a.get_int("in_channels", 1), classes = a.get_int("num_classes", 10),
                 size = a.get_int("image_size", 28);
         a.finish({"in_channels", "num_classes", "image_size"});
         return std::make_shared<LeNet5>(in, classes, size);
       },
       {"in_channels", "num_classes", "image_size"}},
      entry("resnet8", "CIFAR ResNet-8 (1 basic block per stage, 16/32/64)", simple<CifarResNet>(int64_t{8})),
      entry("resnet20", "CIFAR ResNet-20, ResNetC of torch_models.py (3 blocks per stage, 16/32/64)",
            simple<CifarResNet>(int64_t{20})),
      entry("resnet32", "CIFAR ResNet-32 (5 blocks per stage, 16/32/64)", simple<CifarResNet>(int64_t{32})),
      entry("resnet56", "CIFAR ResNet-56 (9 blocks per stage, 16/32/64)", simple<CifarResNet>(int64_t{56})),
      entry("resnet18", "ResNet-18, torchvision names, 3x3 stem without max pool", resnet18),
      entry("resnet34", "ResNet-34, torchvision names, 3x3 stem without max pool", resnet34),
      entry("resnet50", "ResNet-50 (bottleneck), torchvision names, 3x3 stem without max pool", resnet50),
      entry("resnet101", "ResNet-101 (bottleneck), torchvision names, 3x3 stem without max pool", resnet101),
      entry("mobilenet_v1", "MobileNetV1, 13 depthwise-separable blocks, strides for small inputs",
            simple<MobileNetV1>()),
      entry("mobilenet_v2", "MobileNetV2, torchvision configuration and names, strides for small inputs",
            simple<MobileNetV2>()),
      entry("mobilenet_v2_small", "small MobileNetV2, MobileNetV2S of torch_models.py (8 blocks, head 320)",
            simple<MobileNetV2Small>()),
      entry("mobilenet_v3_small", "MobileNetV3-Small, torchvision names, strides for small inputs",
            simple<MobileNetV3>(Arch::Small)),
      entry("mobilenet_v3_large", "MobileNetV3-Large, torchvision names, strides for small inputs",
            simple<MobileNetV3>(Arch::Large)),
      entry("vgg11", "VGG-11 with batch norm, 3 max pools, classifier 512-512", simple<VGG>(int64_t{11})),
      entry("vgg13", "VGG-13 with batch norm, 3 max pools, classifier 512-512", simple<VGG>(int64_t{13})),
      entry("vgg16", "VGG-16 with batch norm, 3 max pools, classifier 512-512", simple<VGG>(int64_t{16})),
      entry("vgg19", "VGG-19 with batch norm, 3 max pools, classifier 512-512", simple<VGG>(int64_t{19})),
      entry("googlenet", "GoogLeNet (Inception v1), 3x3 stem, no auxiliary classifiers", simple<GoogLeNet>()),
  };
  return registry;
}

const ModelInfo& model_info(const std::string& name) {
  for (const ModelInfo& info : model_registry())
    if (info.name == name) return info;
  std::string list;
  for (const ModelInfo& info : model_registry()) list += (list.empty() ? "" : ", ") + info.name;
  QSLIM_FAIL("unknown model '", name, "' (available: ", list, ")");
}

bool model_accepts(const std::string& name, const std::string& key) {
  const ModelInfo& info = model_info(name);
  return std::find(info.args.begin(), info.args.end(), key) != info.args.end();
}

nn::ModulePtr create_model(const std::string& spec) {
  ModelArgs args = ModelArgs::parse(spec);
  return model_info(args.name()).build(args);
}

}  // namespace qslim::models
