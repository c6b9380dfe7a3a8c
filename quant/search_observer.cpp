#include "quant/search_observer.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace qslim::quant {

std::vector<double> search_factors(double search_min, double search_step, const char* who) {
  QSLIM_CHECK(search_min > 0 && search_min <= 1, who, ": search_min must be in (0, 1], got ", search_min);
  QSLIM_CHECK(search_step > 0, who, ": search_step must be > 0, got ", search_step);
  std::vector<double> k;
  for (int64_t j = 0;; ++j) {
    const double v = search_min + static_cast<double>(j) * search_step;
    if (v > 1.0 + 1e-9) break;
    k.push_back(std::min(v, 1.0));
  }
  return k;
}

namespace {

const char* loss_type(SearchLoss l) { return l == SearchLoss::Mse ? "MSEObserver" : "EMDObserver"; }

}  // namespace

SearchObserver::SearchObserver(const QuanterOptions& options, SearchLoss loss)
    : TensorObserver(options, loss_type(loss)),
      loss_(loss),
      hist_(options.observer.bins, true, loss_type(loss)),
      factors_(search_factors(options.observer.search_min, options.observer.search_step, loss_type(loss))) {}

double SearchObserver::loss_at(double threshold) const {
  const double s = threshold_to_scale(threshold, grid());
  const std::vector<double>& pos = hist_.counts();
  const std::vector<double>& neg = hist_.negative_counts();
  const double n = hist_.total();
  if (n <= 0) return 0.0;
  const int64_t bins = hist_.bins();
  // Visits (signed bin centre, count) of every non-empty bin.
  auto each = [&](auto&& fn) {
    for (int64_t b = 0; b < bins; ++b) {
      const double c = hist_.center(b);
      if (pos[b] > 0) fn(c, pos[b]);
      if (neg[b] > 0) fn(-c, neg[b]);
    }
  };
  if (loss_ == SearchLoss::Mse) {
    double err = 0;
    each([&](double v, double w) {
      const double d = v - quant_dequant(v, s, grid(), rounding());
      err += w * d * d;
    });
    return err / n;
  }
  double mean = 0, mean_q = 0;
  each([&](double v, double w) {
    mean += w * v;
    mean_q += w * quant_dequant(v, s, grid(), rounding());
  });
  mean /= n;
  mean_q /= n;
  double var = 0, var_q = 0;
  each([&](double v, double w) {
    const double dq = quant_dequant(v, s, grid(), rounding()) - mean_q;
    var += w * (v - mean) * (v - mean);
    var_q += w * dq * dq;
  });
  return std::fabs(mean - mean_q) + std::fabs(std::sqrt(var / n) - std::sqrt(var_q / n));
}

double SearchObserver::compute_threshold() const {
  const double m = hist_.range();
  if (m <= 0) return 0.0;
  double best_t = m, best = std::numeric_limits<double>::infinity();
  for (double k : factors_) {
    const double t = k * m;
    const double l = loss_at(t);
    if (l < best) {
      best = l;
      best_t = t;
    }
  }
  return best_t;
}

std::string SearchObserver::observer_repr() const {
  std::ostringstream os;
  os << "bins=" << hist_.bins() << ", search=" << factors_.front() << ".." << factors_.back() << " ("
     << factors_.size() << " candidates)";
  return os.str();
}

}  // namespace qslim::quant
