// Shape-only layers: Flatten (dims start..end into one, as torch.nn.Flatten) and Identity.
#pragma once
#include "nn/module.h"

namespace qslim::nn {

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  using Module::forward;
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;
  int64_t start_dim() const { return start_; }
  int64_t end_dim() const { return end_; }

 private:
  int64_t start_, end_;
};

class Identity : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

}  // namespace qslim::nn
