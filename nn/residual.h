// Multi-input joins as modules, so quantization can observe and replace them:
// Add sums its inputs (a + b for two); Concat joins them along `dim`.
#pragma once
#include "nn/module.h"

namespace qslim::nn {

class Add : public Module {
 public:
  using Module::forward;
  Tensor forward(const std::vector<Tensor>& xs) override;
  std::string type_name() const override { return "Add"; }
};

class Concat : public Module {
 public:
  explicit Concat(int64_t dim = 1) : dim_(dim) {}
  using Module::forward;
  Tensor forward(const std::vector<Tensor>& xs) override;
  std::string type_name() const override { return "Concat"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
};

}  // namespace qslim::nn
