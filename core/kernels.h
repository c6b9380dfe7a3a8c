// Non-differentiable tensor kernels shared by autograd ops, optimizers and the engine.
// They allocate their outputs; *_inplace variants write into their first argument.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace qslim::kernels {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
void add_inplace(const Tensor& a, const Tensor& b);              // a += b
void axpy_inplace(const Tensor& a, double alpha, const Tensor& b);  // a += alpha * b
void mul_inplace(const Tensor& a, const Tensor& b);              // a *= b
void scale_inplace(const Tensor& a, double s);                   // a *= s

// Sums `t` over the dimensions that were broadcast to reach its shape from `shape`.
Tensor sum_to(const Tensor& t, const Shape& shape);
// Sum over `dims` (all when empty), keeping reduced dims as size 1 when keepdim.
Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim);
double sum_all(const Tensor& t);
double dot(const Tensor& a, const Tensor& b);  // sum(a*b) over all elements (same shape)
bool all_finite(const Tensor& t);

}  // namespace qslim::kernels
