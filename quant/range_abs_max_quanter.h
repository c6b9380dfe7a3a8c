// range_abs_max: training keeps a ring buffer of the last `window_size` per-batch abs-max values
// and uses T = max over the buffer (recomputed only when the evicted value was the max); eval uses
// the frozen T. Before any training batch, eval falls back to the current tensor's abs-max.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

struct RangeAbsMaxOptions : QuantOptions {
  int64_t window_size = 10000;
};

class RangeAbsMaxQuanter : public Quanter {
 public:
  explicit RangeAbsMaxQuanter(const RangeAbsMaxOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  std::string type_name() const override { return "range_abs_max"; }
  std::string extra_repr() const override;

  int64_t window_size() const { return window_size_; }

 private:
  void update(double batch_abs_max);
  int64_t window_size_;
};

}  // namespace qslim::quant
