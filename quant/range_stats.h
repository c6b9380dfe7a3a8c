// Range statistics that quanters and observers calibrate from: one vectorised pass over f32/f64
// data, parallel for large tensors, no autograd. NaN elements are skipped (a NaN input still shows
// as NaN in the quantized output; it must not poison a running statistic).
#pragma once
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qslim::quant {

// max |x| over all elements; 0 for an empty tensor.
double abs_max(const Tensor& x);
// max |x| per index of `axis` (one value per channel), reducing over every other dim.
std::vector<double> abs_max_per_channel(const Tensor& x, int64_t axis);
// (min, max) over all elements; throws for an empty tensor.
std::pair<double, double> min_max(const Tensor& x);

// mean |x| per index of `axis` (axis -1: one value for the whole tensor).
std::vector<double> mean_abs(const Tensor& x, int64_t axis);

struct ChannelMoments {
  std::vector<double> mean, std;
};
// Mean and standard deviation per index of `axis` (axis -1: one pair for the whole tensor).
// unbiased divides by N-1 (0 when N == 1).
ChannelMoments mean_std(const Tensor& x, int64_t axis, bool unbiased = true);

}  // namespace qslim::quant
