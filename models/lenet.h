// LeNet-5, layer for layer as LeNet5 in shared/peer/torch_models.py (same parameter names):
// conv5x5(6, pad 2)-relu-maxpool-conv5x5(16)-relu-maxpool-fc120-relu-fc84-relu-fc10.
#pragma once
#include "nn/module.h"

namespace qslim::models {

class LeNet5 : public nn::Module {
 public:
  explicit LeNet5(int64_t in_channels = 1, int64_t num_classes = 10, int64_t image_size = 28);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LeNet5"; }
};

}  // namespace qslim::models
