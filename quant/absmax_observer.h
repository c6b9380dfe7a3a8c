// AbsmaxObserver (algo abs_max / direct): T = max over calibration batches of max|x|.
#pragma once
#include "quant/tensor_observer.h"

namespace qslim::quant {

class AbsmaxObserver : public TensorObserver {
 public:
  explicit AbsmaxObserver(const QuanterOptions& options = {});

  double observed_abs_max() const { return max_; }

 protected:
  void observe(const Tensor& x) override;
  double compute_threshold() const override { return max_; }
  void reset() override { max_ = 0; }

 private:
  double max_ = 0;
};

}  // namespace qslim::quant
