// Differentiable reductions and softmax. `dims` empty means all dims.
#pragma once
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qslim {

// Integer inputs are summed in (and return) i64, as in PyTorch.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance; unbiased divides by N-1 (PyTorch's default).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false);
// Max/min over one dim: values (differentiable, gradient to the first arg-max) and i64 indices.
// NaN counts as the extreme, as in PyTorch.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
// Over all elements, shape []; tied extremes share the gradient evenly (PyTorch's rule).
Tensor max(const Tensor& x);
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace qslim
