// Classification metrics.
#pragma once
#include "core/tensor.h"

namespace qslim::train {

// Number of rows of logits [N, C] whose label (i64 [N]) is among the k largest logits.
int64_t count_topk_correct(const Tensor& logits, const Tensor& labels, int64_t k);

}  // namespace qslim::train
