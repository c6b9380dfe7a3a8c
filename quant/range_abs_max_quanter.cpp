#include "quant/range_abs_max_quanter.h"

#include "core/factory.h"
#include "quant/range_stats.h"

namespace qslim::quant {

RangeAbsMaxQuanter::RangeAbsMaxQuanter(const RangeAbsMaxOptions& options)
    : Quanter(options), window_size_(options.window_size) {
  QSLIM_CHECK(options.window_size >= 1, "range_abs_max: window_size must be >= 1, got ", options.window_size);
  register_buffer("scale", zeros({1}));      // frozen step; 0 = no training batch yet
  register_buffer("threshold", zeros({1}));  // T = max over the window
  register_buffer("window", zeros({window_size_}));
  register_buffer("iter", zeros({}, DType::I64));  // training batches seen
}

void RangeAbsMaxQuanter::update(double batch_abs_max) {
  Tensor iter = buffer("iter"), window = buffer("window"), threshold = buffer("threshold");
  const int64_t it = iter.data<int64_t>()[0];
  float* w = window.data<float>();
  float& t = threshold.data<float>()[0];
  const float m = static_cast<float>(batch_abs_max);
  const int64_t slot = it % window_size_;
  // T is always one of the window's values, so an exact comparison finds an evicted maximum.
  const bool evicted_max = it >= window_size_ && w[slot] == t;
  w[slot] = m;
  if (m >= t) {
    t = m;
  } else if (evicted_max) {
    float mx = 0;
    for (int64_t i = 0, n = std::min(it + 1, window_size_); i < n; ++i) mx = std::max(mx, w[i]);
    t = mx;
  }
  iter.data<int64_t>()[0] = it + 1;
  buffer("scale").fill_(threshold_to_scale(t, grid()));
  for (Tensor b : {iter, window, threshold}) b.bump_version();
}

Tensor RangeAbsMaxQuanter::forward(const Tensor& x) {
  if (is_training()) update(abs_max(x));
  Tensor scale = buffer("scale");
  if (scale.item() > 0) return fake_quant(x, scale, -1);
  Tensor current = full({1}, threshold_to_scale(abs_max(x), grid()));
  return fake_quant(x, current, -1);
}

QuantParams RangeAbsMaxQuanter::quant_params() const { return symmetric_params(buffer("scale"), -1); }

std::string RangeAbsMaxQuanter::extra_repr() const {
  return Quanter::extra_repr() + ", window_size=" + std::to_string(window_size_);
}

}  // namespace qslim::quant
