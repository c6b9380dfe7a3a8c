// HistObserver (algo hist): T from a percentile of the merged |x| histogram (quant/abs_histogram.h,
// options.observer.bins bins over [0, max|x|]). T = (i + 0.5) * bin_width for the first bin i at
// which the cumulative share of the counts reaches hist_percent (PaddleSlim's formula; "reaches"
// allows a 1e-9 relative rounding slack so hist_percent = 1 always lands on the last non-empty bin).
#pragma once
#include "quant/abs_histogram.h"
#include "quant/tensor_observer.h"

namespace qslim::quant {

// The percentile bin of `counts` (see above); -1 when every count is 0.
int64_t percentile_bin(const std::vector<double>& counts, double percent);

class HistObserver : public TensorObserver {
 public:
  explicit HistObserver(const QuanterOptions& options = {});

  const AbsHistogram& histogram() const { return hist_; }
  double hist_percent() const { return percent_; }

 protected:
  void observe(const Tensor& x) override { hist_.add(x); }
  double compute_threshold() const override;
  void reset() override { hist_.clear(); }
  std::string observer_repr() const override;

 private:
  AbsHistogram hist_;
  double percent_;
};

}  // namespace qslim::quant
