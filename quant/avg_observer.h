// AVGObserver (algo avg): per batch, the mean over samples (dim 0) of each sample's max|x|;
// T = the mean of those values over the calibration batches. A rank-0 tensor is one sample.
#pragma once
#include "quant/tensor_observer.h"

namespace qslim::quant {

class AVGObserver : public TensorObserver {
 public:
  explicit AVGObserver(const QuanterOptions& options = {});

 protected:
  void observe(const Tensor& x) override;
  double compute_threshold() const override { return recorded_ > 0 ? sum_ / static_cast<double>(recorded_) : 0.0; }
  void reset() override {
    sum_ = 0;
    recorded_ = 0;
  }

 private:
  double sum_ = 0;      // sum over batches of the batch's mean per-sample abs-max
  int64_t recorded_ = 0;  // batches recorded since the last reset
};

}  // namespace qslim::quant
