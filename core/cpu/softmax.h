// CPU softmax, log-softmax and fused cross-entropy kernels. A contiguous tensor is viewed as
// [outer, n, inner] around the softmax dim; the last-dim case (inner == 1, e.g. [N, C] logits) is
// the training hot path and takes a row-tiled loop with one vectorised exp per tile.
#pragma once
#include "core/tensor.h"

namespace qslim::cpu {

// softmax (log = false) or log_softmax (log = true) of x over `dim`; x must be f32/f64.
Tensor softmax_forward(const Tensor& x, int64_t dim, bool log);
// Input gradient from the output gradient `grad` and the forward output `out` (same shapes).
Tensor softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim, bool log);

struct CrossEntropyForward {
  Tensor losses;  // [N]: (1 - eps) * (lse - x[t]) + eps * (lse - mean_c x[c])
  Tensor probs;   // [N, C] softmax of the logits (only when requested)
};

// logits [N, C] (f32/f64, contiguous or not), target i64 [N] with values already checked in [0, C).
CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& target, double eps, bool want_probs);
// d loss_r / d x[r, c] = p[r, c] - eps / C - (1 - eps) [c == t_r], scaled by grad_r * scale;
// `grad` has either one element (reduced loss) or N (per-sample losses).
Tensor cross_entropy_backward(const Tensor& probs, const Tensor& target, const Tensor& grad, double scale, double eps);

}  // namespace qslim::cpu
