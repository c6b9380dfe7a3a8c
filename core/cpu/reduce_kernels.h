// CPU kernels for arg-reductions: max/min over one dim with the index of the first extreme.
#pragma once
#include "core/tensor.h"

namespace qslim::cpu {

// Max (is_max) or min of x over `dim` (already wrapped; the dim must be non-empty), with keepdim
// shapes. NaN counts as the extreme, as in PyTorch; ties go to the first index. `values` may be
// null when only the indices are wanted (argmax). Indices are i64.
void minmax_dim(const Tensor& x, int64_t dim, bool is_max, Tensor* values, Tensor& indices);

}  // namespace qslim::cpu
