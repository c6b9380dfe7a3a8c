#include "quant/hist_observer.h"

#include <sstream>

namespace qslim::quant {

int64_t percentile_bin(const std::vector<double>& counts, double percent) {
  double total = 0;
  for (double c : counts) total += c;
  if (total <= 0) return -1;
  const double need = percent * total * (1.0 - 1e-9);
  double cum = 0;
  int64_t last_nonempty = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(counts.size()); ++i) {
    cum += counts[i];
    if (counts[i] > 0) last_nonempty = i;
    if (cum >= need) return i;
  }
  return last_nonempty;
}

HistObserver::HistObserver(const QuanterOptions& options)
    : TensorObserver(options, "HistObserver"),
      hist_(options.observer.bins, false, "HistObserver"),
      percent_(options.observer.hist_percent) {
  QSLIM_CHECK(percent_ > 0 && percent_ <= 1, "HistObserver: hist_percent must be in (0, 1], got ", percent_);
}

double HistObserver::compute_threshold() const {
  const int64_t i = percentile_bin(hist_.counts(), percent_);
  return i < 0 ? 0.0 : hist_.center(i);
}

std::string HistObserver::observer_repr() const {
  std::ostringstream os;
  os << "bins=" << hist_.bins() << ", hist_percent=" << percent_;
  return os.str();
}

}  // namespace qslim::quant
