// Builds zoo models by name with arguments: "lenet", "lenet:in_channels=3,num_classes=100".
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace qslim::models {

// Parsed "name:key=value,key=value". Accessors consume keys; finish() rejects leftovers.
class ModelArgs {
 public:
  static ModelArgs parse(const std::string& spec);
  const std::string& name() const { return name_; }
  int64_t get_int(const std::string& key, int64_t def);
  double get_double(const std::string& key, double def);
  // Throws naming any key that no accessor consumed, with the allowed keys.
  void finish(const std::vector<std::string>& allowed) const;

 private:
  std::string name_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> used_;
};

struct ModelInfo {
  std::string name;
  std::string description;
  std::function<nn::ModulePtr(ModelArgs&)> build;
  std::vector<std::string> args;  // the argument keys the model accepts
};

// Every model takes in_channels (default 1) and num_classes (default 10); all but lenet take width
// (e.g. "resnet18:width=0.5"); lenet takes image_size (default 28).
nn::ModulePtr create_model(const std::string& spec);
const std::vector<ModelInfo>& model_registry();
// The registry entry named `name` (without arguments); throws listing the models.
const ModelInfo& model_info(const std::string& name);
// Whether model `name` takes argument `key` (e.g. "image_size").
bool model_accepts(const std::string& name, const std::string& key);

}  // namespace qslim::models
