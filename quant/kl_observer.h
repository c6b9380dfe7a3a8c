// KLObserver (algo KL): TensorRT's entropy calibration on the merged |x| histogram
// (quant/abs_histogram.h, options.observer.bins bins over [0, max|x|]).
//
// For each cut i from the start (KlStart::TensorRT: 128; KlStart::Paddle: bins / 2 - 1) to bins:
//  - P = bins [0, i) with the mass of bins [i, bins) folded into P[i-1]; cuts with P[i-1] = 0
//    (nothing at or beyond the cut) are skipped, as TensorRT and PaddleSlim do;
//  - Q = the unfolded bins [0, i) merged into L = min(qmax, i) groups, group g spanning bins
//    [g i / L, (g + 1) i / L) (qmax = the grid's positive end, 127 for 8 bits), each group's mass
//    spread uniformly over the bins of the group that are non-empty in P. TensorRT and PaddleSlim
//    give every group i / L bins and the last group the remainder: for L <= i < 2L that leaves the
//    first L - 1 bins unmerged (Q = P there), so cuts just above the start look nearly free and
//    win — on LeNet they clipped fc2's input at 1.2 of a 10 range (-1.55 points at W8A8);
//  - KL(P||Q) = sum over p > 0 of p log(p / q), with P and Q normalised. Q is built from the
//    unfolded bins (TensorRT) so that clipped mass shows in the divergence; hence q can be 0 where
//    p > 0 (clipped mass folded into a bin whose group held no unclipped mass), and such q are
//    smoothed up to kKlFloor: a large finite penalty instead of an infinite divergence.
// Values exactly 0 are left out of P and Q (the histogram counts them apart): every cut represents
// them exactly, and in bin 0 the zeros of a post-ReLU tensor dominate P and pull the search to cuts
// that clip the real values.
// Cuts that would clip more than options.observer.kl_max_clipped of the (non-zero) values are not
// considered (see observer_options.h for why).
// The cut with the smallest KL wins (the first on ties); T = (i + 0.5) * bin_width. With fewer
// bins than the start, or an all-zero histogram, T falls back to the abs-max (the range).
#pragma once
#include "quant/abs_histogram.h"
#include "quant/tensor_observer.h"

namespace qslim::quant {

inline constexpr double kKlFloor = 1e-12;

struct KlCut {
  int64_t cut = -1;  // -1: no cut had mass at or beyond it (empty histogram or start > bins)
  double kl = 0;
};
// The search above over cuts start..counts.size(), with `levels` = qmax quantization levels.
KlCut kl_optimal_cut(const std::vector<double>& counts, int64_t start, int64_t levels);
// The first cut searched for a histogram of `bins` bins.
int64_t kl_start_bin(KlStart start, int64_t bins);

class KLObserver : public TensorObserver {
 public:
  explicit KLObserver(const QuanterOptions& options = {});

  const AbsHistogram& histogram() const { return hist_; }
  KlStart kl_start() const { return start_; }

 protected:
  void observe(const Tensor& x) override { hist_.add(x); }
  double compute_threshold() const override;
  void reset() override { hist_.clear(); }
  std::string observer_repr() const override;

 private:
  AbsHistogram hist_;
  KlStart start_;
  double max_clipped_;
};

}  // namespace qslim::quant
