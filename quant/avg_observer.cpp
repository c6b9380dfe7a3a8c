#include "quant/avg_observer.h"

#include "quant/range_stats.h"

namespace qslim::quant {

AVGObserver::AVGObserver(const QuanterOptions& options) : TensorObserver(options, "AVGObserver") {}

void AVGObserver::observe(const Tensor& x) {
  double batch_mean = 0;
  if (x.dim() == 0) {
    batch_mean = abs_max(x);
  } else {
    const std::vector<double> per_sample = abs_max_per_channel(x, 0);
    for (double m : per_sample) batch_mean += m;
    batch_mean /= static_cast<double>(per_sample.size());
  }
  sum_ += batch_mean;
  ++recorded_;
}

}  // namespace qslim::quant
