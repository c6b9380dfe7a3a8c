// Losses. Targets are i64 class indices of shape [N]; logits [N, C].
#pragma once
#include "core/tensor.h"

namespace qslim {

enum class Reduction { None, Mean, Sum };

// Label smoothing eps mixes the one-hot target with the uniform distribution (PyTorch semantics).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     Reduction reduction = Reduction::Mean);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction = Reduction::Mean);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

}  // namespace qslim
