// PTQ observers (QUANT_SPEC.md §4): quanters that watch calibration data instead of training.
//
// Contract (on top of Quanter's):
//  - While calibrating (the default state after construction), forward(x) records statistics of
//    x and returns x unchanged. Calibration runs the model in eval mode; observers ignore the
//    train/eval flag.
//  - finalize() computes the step size(s) from everything observed and ends calibration; after it
//    forward(x) fake-quantizes x with the frozen step (the simulated PTQ model), and quant_params()
//    returns the frozen params. quant_params() before finalize() finalizes first when statistics
//    exist, and throws naming the observer when nothing was observed.
//  - Weight observers (role Weight) compute their step from the tensor they are given on every
//    forward (like channel_wise_abs_max) and are always "finalized".
//  - Memory is O(bins) (or O(channels)), never O(samples): histograms merge across batches,
//    re-binning when a later batch widens the range.
//  - The frozen step lives in a "scale" buffer (f32 [1] or [C]), so state_dict() holds it.
//
// Types (PaddleSlim's class names) and the `algo` names of quant_post_static that select them:
//   "AbsmaxObserver" (abs_max, direct)  max over batches of max|x|
//   "AVGObserver" (avg)                 mean over batches of (mean over samples of per-sample max|x|)
//   "HistObserver" (hist)               percentile of a |x| histogram (hist_percent)
//   "KLObserver" (KL)                   KL-divergence optimal cut of the |x| histogram
//   "MSEObserver" (mse)                 T = k * max|x| minimising quantization MSE over all batches
//   "EMDObserver" (emd)                 same grid, minimising |mean - mean'| + |std - std'|
//   "AbsMaxChannelWiseWeightObserver"   per output channel abs-max (weights)
//   "MSEChannelWiseWeightObserver"      per output channel MSE-optimal T (weights)
#pragma once
#include <string>
#include <vector>

#include "quant/quanter.h"
#include "quant/quanter_factory.h"

namespace qslim::quant {

class Observer : public Quanter {
 public:
  explicit Observer(const QuantOptions& options) : Quanter(options) {}

  // Ends calibration and freezes the step; idempotent. Throws naming the observer when it saw nothing.
  virtual void finalize() = 0;
  virtual bool finalized() const = 0;
  // Calibration batches seen so far (forward calls while calibrating).
  virtual int64_t batches_seen() const = 0;
};

// Every observer type, in the order above.
const std::vector<std::string>& observer_types();
// The observer type of a quant_post_static algo ("abs_max", "direct", "avg", "hist", "KL", "mse",
// "emd"; case-insensitive); throws listing the allowed algos.
std::string observer_type_for_algo(const std::string& algo);
const std::vector<std::string>& ptq_algos();
// Builds an observer; options.observer holds bins, hist_percent, the KL start and the search grid;
// channel-wise weight observers need options.channels (and options.axis).
QuanterPtr make_observer(const std::string& type, const QuanterOptions& options);

}  // namespace qslim::quant
