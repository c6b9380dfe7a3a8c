// moving_average_abs_max: per training batch state = r*state + 1, accum = r*accum + max|x|,
// T = accum / state; eval uses the frozen T. Default state = accum = 0, so the first batch's
// abs-max is the first T; paddle_parity_init starts from state = accum = 1 (PaddleSlim's phantom
// first sample of value 1.0). Before any training batch, eval falls back to the current tensor's
// abs-max.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

struct MovingAverageAbsMaxOptions : QuantOptions {
  double moving_rate = 0.9;
  bool paddle_parity_init = false;
};

class MovingAverageAbsMaxQuanter : public Quanter {
 public:
  explicit MovingAverageAbsMaxQuanter(const MovingAverageAbsMaxOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  std::string type_name() const override { return "moving_average_abs_max"; }
  std::string extra_repr() const override;

  double moving_rate() const { return rate_; }

 private:
  double rate_;
  bool paddle_init_;
};

}  // namespace qslim::quant
