// CPU reduction kernels: sums over any set of dims and max/min over one dim with the index of the
// first extreme.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace qslim::cpu {

// Sum of x over the dims flagged in `reduce` (one flag per dim), in the keepdim shape. Vectorised
// for every layout (unlike a serial accumulation), parallel when large; f32 accumulates SIMD lanes
// blockwise and combines the blocks in f64, so long sums keep their precision.
Tensor sum_dims(const Tensor& x, const std::vector<bool>& reduce);

// Max (is_max) or min of x over `dim` (already wrapped; the dim must be non-empty), with keepdim
// shapes. NaN counts as the extreme, as in PyTorch; ties go to the first index. `values` may be
// null when only the indices are wanted (argmax). Indices are i64.
void minmax_dim(const Tensor& x, int64_t dim, bool is_max, Tensor* values, Tensor& indices);

}  // namespace qslim::cpu
