// MSEObserver (algo mse) and EMDObserver (algo emd): a search over thresholds T = k * M, M = the
// max|x| over all calibration batches and k = search_min, search_min + search_step, ..., 1.00,
// keeping the candidate with the lowest loss (the first on ties):
//   mse: mean of (x - x')^2;   emd: |mean(x) - mean(x')| + |std(x) - std(x')| (population std),
// with x' = quantize-dequantize of x at step s = T / qmax on the observer's grid and rounding.
//
// The loss is accumulated over ALL batches in O(bins) memory: it is evaluated at finalize on the
// merged sign-split |x| histogram (quant/abs_histogram.h), every value taken at its bin centre
// (with its sign, so negative values count and the signed grid's extra negative level is exact).
// The error is therefore that of values moved by at most half a bin (M / (2 bins)) - 1/16 of the
// 8-bit step at k = 1 with 2048 bins. PaddleSlim keeps the best single batch instead, zeroes
// negative values in its static mse path and uses max(x) for emd: defects not reproduced here.
#pragma once
#include <vector>

#include "quant/abs_histogram.h"
#include "quant/tensor_observer.h"

namespace qslim::quant {

// The k grid: search_min + j * search_step for j = 0, 1, ... while <= 1 (1e-9 slack, so 0.30 +
// 35 * 0.02 counts as 1.00). Throws unless 0 < search_min <= 1 and search_step > 0.
std::vector<double> search_factors(double search_min, double search_step, const char* who);

// x' = clamp(round(v / s), qmin, qmax) * s.
inline double quant_dequant(double v, double s, const QuantGrid& grid, Rounding rounding) {
  double q = round_value(v / s, rounding);
  q = q < static_cast<double>(grid.qmin()) ? static_cast<double>(grid.qmin()) : q;
  q = q > static_cast<double>(grid.qmax()) ? static_cast<double>(grid.qmax()) : q;
  return q * s;
}

enum class SearchLoss : uint8_t { Mse, Emd };

class SearchObserver : public TensorObserver {
 public:
  SearchObserver(const QuanterOptions& options, SearchLoss loss);

  const AbsHistogram& histogram() const { return hist_; }
  SearchLoss loss() const { return loss_; }
  const std::vector<double>& factors() const { return factors_; }
  // The loss of threshold T on the merged histogram (what the search minimises).
  double loss_at(double threshold) const;

 protected:
  void observe(const Tensor& x) override { hist_.add(x); }
  double compute_threshold() const override;
  void reset() override { hist_.clear(); }
  std::string observer_repr() const override;

 private:
  SearchLoss loss_;
  AbsHistogram hist_;
  std::vector<double> factors_;
};

class MSEObserver : public SearchObserver {
 public:
  explicit MSEObserver(const QuanterOptions& options = {}) : SearchObserver(options, SearchLoss::Mse) {}
};

class EMDObserver : public SearchObserver {
 public:
  explicit EMDObserver(const QuanterOptions& options = {}) : SearchObserver(options, SearchLoss::Emd) {}
};

}  // namespace qslim::quant
