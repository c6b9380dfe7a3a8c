#include "train/metrics.h"

namespace qslim::train {

int64_t count_topk_correct(const Tensor& logits, const Tensor& labels, int64_t k) {
  QSLIM_CHECK(logits.dim() == 2 && labels.dim() == 1 && labels.size(0) == logits.size(0),
              "count_topk_correct: logits ", shape_str(logits.shape()), " and labels ", shape_str(labels.shape()),
              " do not match (expected [N, C] and [N])");
  Tensor l = logits.to(DType::F32).contiguous();
  Tensor y = labels.to(DType::I64).contiguous();
  const float* p = l.data<float>();
  const int64_t* t = y.data<int64_t>();
  int64_t n = l.size(0), c = l.size(1), correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    QSLIM_CHECK(t[i] >= 0 && t[i] < c, "count_topk_correct: label ", t[i], " out of range [0, ", c, ")");
    const float* row = p + i * c;
    float target = row[t[i]];
    // Rank of the target = number of classes scoring strictly higher (ties count in its favour).
    int64_t higher = 0;
    for (int64_t j = 0; j < c; ++j) higher += row[j] > target;
    correct += higher < k;
  }
  return correct;
}

}  // namespace qslim::train
