// Adam and AdamW with PyTorch's update rules (t = per-parameter step count, from 1):
//   Adam:  g += weight_decay * p          AdamW: p *= 1 - lr * weight_decay
//   m = m + (1 - beta1) * (g - m)
//   v = beta2 * v + (1 - beta2) * g * g
//   vmax = max(vmax, v) and use vmax in place of v            (amsgrad)
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once
#include "nn/optim/optimizer.h"

namespace qslim::optim {

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const GroupOptions& options);
  explicit Adam(std::vector<ParamGroup> groups);

  std::string name() const override { return decoupled_ ? "AdamW" : "Adam"; }
  void step() override;

 protected:
  Adam(bool decoupled_weight_decay) : decoupled_(decoupled_weight_decay) {}
  void add_groups(std::vector<ParamGroup> groups);
  void validate(const GroupOptions& o) const override;
  std::vector<std::string> buffer_names(const GroupOptions& o) const override;

 private:
  bool decoupled_ = false;
};

// Adam with decoupled weight decay (Loshchilov & Hutter).
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const GroupOptions& options);
  explicit AdamW(std::vector<ParamGroup> groups);
};

}  // namespace qslim::optim
