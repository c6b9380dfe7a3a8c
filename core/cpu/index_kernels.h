// CPU kernels for joining and indexing along one dim: cat, index_select / index_add and
// gather / scatter_add. Index tensors are i64; the forward kernels check every index against the
// dim size and name the bad value, the backward kernels trust indices the forward already checked.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace qslim::cpu {

// Concatenates same-dtype tensors whose shapes agree outside `dim` into a new tensor of out_shape.
Tensor cat_dim(const std::vector<Tensor>& xs, int64_t dim, const Shape& out_shape);

// out[.., k, ..] = x[.., index[k], ..] along dim; index is 1-D.
Tensor index_select_dim(const Tensor& x, int64_t dim, const Tensor& index, const char* op);
// out[.., index[k], ..] += src[.., k, ..]; out contiguous.
void index_add_dim(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

// out[p] = x[p with coordinate `dim` replaced by index[p]]; out has the index's shape.
Tensor gather_dim(const Tensor& x, int64_t dim, const Tensor& index, const char* op);
// out[p with coordinate `dim` replaced by index[p]] += src[p]; out contiguous, src of the index's shape.
void scatter_add_dim(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace qslim::cpu
