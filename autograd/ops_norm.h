// Batch normalisation, dropout and embedding lookup.
#pragma once
#include <cstdint>

#include "core/random.h"
#include "core/tensor.h"

namespace qslim {

// x [N, C] or [N, C, *]. Training: normalise with batch statistics (biased variance) and update
// running_mean/var in place (unbiased variance, PyTorch momentum convention). Eval: running stats.
// weight/bias optional (affine=false).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
// An activation fused into batch_norm_act.
enum class BnActivation : uint8_t { None, Relu, Relu6 };
// act(batch_norm(x, ...)) in the same passes over the data, forward and backward: one write of the
// output instead of two, and the activation's gradient mask applied inside batch norm's backward.
// Same arguments, results and running-stat updates as relu(batch_norm(...)) / relu6(batch_norm(...)).
Tensor batch_norm_act(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                      const Tensor& bias, bool training, BnActivation act, double momentum = 0.1, double eps = 1e-5);
// Inverted dropout: kept values scaled by 1/(1-p); identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
// weight [num, dim], indices i64 of any shape -> [..., dim]. Rows equal to padding_idx (if >= 0)
// receive no gradient.
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);

}  // namespace qslim
