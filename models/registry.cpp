#include "models/registry.h"

#include <sstream>

#include "models/lenet.h"

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

const std::vector<ModelInfo>& model_registry() {
  static const std::vector<ModelInfo> registry = {
      {"lenet", "LeNet-5 (conv5x5 x2, fc 120-84-classes)",
       [](ModelArgs& a) -> nn::ModulePtr {
         int64_t in = a.get_int("in_channels", 1), classes = a.get_int("num_classes", 10),
                 size = a.get_int("image_size", 28);
         a.finish({"in_channels", "num_classes", "image_size"});
         return std::make_shared<LeNet5>(in, classes, size);
       }},
  };
  return registry;
}

nn::ModulePtr create_model(const std::string& spec) {
  ModelArgs args = ModelArgs::parse(spec);
  for (const ModelInfo& info : model_registry())
    if (info.name == args.name()) return info.build(args);
  std::string list;
  for (const ModelInfo& info : model_registry()) list += (list.empty() ? "" : ", ") + info.name;
  QSLIM_FAIL("unknown model '", args.name(), "' (available: ", list, ")");
}

}  // namespace qslim::models
