// A mergeable histogram of |x| over [0, range] with a fixed number of bins, for the PTQ observers
// (QUANT_SPEC.md §4): memory O(bins) whatever the number of batches.
//
// Range: the first batch with a non-zero value sets range = its max|x|. A later batch whose max|x|
// exceeds the range grows the range to exactly that max and re-bins the existing counts
// proportionally: each old bin's count is spread over the (at most two) new bins its interval
// overlaps, in proportion to the overlap, i.e. assuming a uniform density inside an old bin. That
// is the only approximation (counts become fractional; the total is preserved exactly); PaddleSlim
// does the same by up-sampling each bin 64 times. The range always equals the max|x| seen so far.
//
// With split_sign, negative values are counted apart (by |x|, in their own bins over the same
// range), so statistics that depend on the sign (the mean, or the asymmetric negative end of the
// signed grid) are exact up to the bin resolution. Zeros count as positive. NaN values are
// skipped; infinite values are errors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qslim::quant {

class AbsHistogram {
 public:
  // `who` names the owner in error messages (e.g. "HistObserver").
  AbsHistogram(int64_t bins, bool split_sign, std::string who);

  // Adds every element of x (f32 or f64, any shape, any strides). One pass once the range is known
  // (a batch that widens it is binned again after the re-binning), parallel over chunks for large
  // tensors with per-chunk partial counts merged in chunk order (deterministic).
  void add(const Tensor& x);
  void clear();

  int64_t bins() const { return bins_; }
  bool split_sign() const { return split_; }
  double range() const { return range_; }  // = max|x| seen so far; 0 while every value was 0
  double bin_width() const { return range_ / static_cast<double>(bins_); }
  // Centre of bin i: (i + 0.5) * bin_width.
  double center(int64_t i) const { return (static_cast<double>(i) + 0.5) * bin_width(); }
  // Counts of |x| per bin: all values, or (split_sign) the non-negative ones.
  const std::vector<double>& counts() const { return pos_; }
  // split_sign only: counts of |x| for the negative values (empty otherwise).
  const std::vector<double>& negative_counts() const { return neg_; }
  // Counts of |x| per bin regardless of sign (counts() + negative_counts()).
  std::vector<double> abs_counts() const;
  double total() const;  // number of (non-NaN) values added
  // Non-NaN values added so far (exact integer count).
  int64_t count() const { return count_; }
  // Values exactly 0 added so far (included in counts()[0]; re-binning keeps them in bin 0).
  int64_t zeros() const { return zeros_; }

 private:
  void grow(double new_range);
  // Counts xc (contiguous) into scratch_ with the current range; returns its max|x|.
  double bin_counts(const Tensor& xc);

  int64_t bins_;
  bool split_;
  std::string who_;
  double range_ = 0;
  int64_t count_ = 0;
  int64_t zeros_ = 0;
  std::vector<double> pos_, neg_;
  std::vector<uint32_t> scratch_;  // per-chunk partial counts, reused across batches
};

}  // namespace qslim::quant
