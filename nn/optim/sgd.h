// Stochastic gradient descent with PyTorch's update rule:
//   d = grad + weight_decay * p
//   buf = d on the first update, else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf      (when momentum != 0)
//   p -= lr * d
#pragma once
#include "nn/optim/optimizer.h"

namespace qslim::optim {

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const GroupOptions& options);
  explicit SGD(std::vector<ParamGroup> groups);

  std::string name() const override { return "SGD"; }
  void step() override;

 protected:
  void validate(const GroupOptions& o) const override;
  std::vector<std::string> buffer_names(const GroupOptions& o) const override;
};

}  // namespace qslim::optim
