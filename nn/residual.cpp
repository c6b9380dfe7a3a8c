#include "nn/residual.h"

#include "autograd/ops_arith.h"
#include "autograd/ops_index.h"

namespace qslim::nn {

Tensor Add::forward(const std::vector<Tensor>& xs) {
  QSLIM_CHECK(xs.size() >= 2, "Add: expected at least 2 inputs, got ", xs.size());
  for (size_t i = 1; i < xs.size(); ++i)
    QSLIM_CHECK(xs[i].shape() == xs[0].shape(), "Add: input ", i, " has shape ", shape_str(xs[i].shape()),
                " but input 0 has shape ", shape_str(xs[0].shape()));
  Tensor y = add(xs[0], xs[1]);
  for (size_t i = 2; i < xs.size(); ++i) y = add(y, xs[i]);
  return y;
}

Tensor Concat::forward(const std::vector<Tensor>& xs) {
  QSLIM_CHECK(!xs.empty(), "Concat: expected at least 1 input");
  return cat(xs, dim_);
}

}  // namespace qslim::nn
