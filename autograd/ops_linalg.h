// Matrix products on Eigen GEMM.
#pragma once
#include "core/tensor.h"

namespace qslim {

// 2-D [M,K]x[K,N]; batched [...,M,K]x[...,K,N] with broadcast batch dims; 1-D operands as vectors.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x W^T + b with W [out, in] (PyTorch layout); x [..., in]; bias optional.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace qslim
