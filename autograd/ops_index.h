// Differentiable joining and indexing.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace qslim {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: i64 [K]
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // index: i64, same rank as x

}  // namespace qslim
