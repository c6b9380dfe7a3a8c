#include "nn/linear.h"

#include <cmath>

#include "autograd/ops_linalg.h"
#include "core/factory.h"
#include "nn/init.h"

namespace qslim::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias) : in_(in_features), out_(out_features) {
  QSLIM_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in_features=",
              in_features, ", out_features=", out_features);
  register_parameter("weight", empty({out_features, in_features}));
  if (bias) register_parameter("bias", empty({out_features}));
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight(), std::sqrt(5.0));
  if (has_bias()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    init::uniform_(bias(), -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: input ", shape_str(x.shape()), " has last dim ",
              x.dim() >= 1 ? x.size(-1) : 0, " but the layer expects in_features=", in_);
  return linear(x, weight(), bias());
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_) +
         ", bias=" + (has_bias() ? "True" : "False");
}

}  // namespace qslim::nn
