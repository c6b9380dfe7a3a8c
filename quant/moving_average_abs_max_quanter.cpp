#include "quant/moving_average_abs_max_quanter.h"

#include "core/factory.h"
#include "quant/range_stats.h"

namespace qslim::quant {

MovingAverageAbsMaxQuanter::MovingAverageAbsMaxQuanter(const MovingAverageAbsMaxOptions& options)
    : Quanter(options), rate_(options.moving_rate), paddle_init_(options.paddle_parity_init) {
  QSLIM_CHECK(options.moving_rate >= 0 && options.moving_rate < 1,
              "moving_average_abs_max: moving_rate must be in [0, 1), got ", options.moving_rate);
  const double init = paddle_init_ ? 1.0 : 0.0;
  register_buffer("scale", zeros({1}));  // frozen step; 0 = no training batch yet
  register_buffer("state", full({1}, init));
  register_buffer("accum", full({1}, init));
}

Tensor MovingAverageAbsMaxQuanter::forward(const Tensor& x) {
  Tensor scale = buffer("scale");
  if (is_training()) {
    Tensor state = buffer("state"), accum = buffer("accum");
    const double st = rate_ * state.item() + 1.0;
    const double ac = rate_ * accum.item() + abs_max(x);
    state.fill_(st);
    accum.fill_(ac);
    scale.fill_(threshold_to_scale(ac / st, grid()));
  }
  if (scale.item() > 0) return fake_quant(x, scale, -1);
  Tensor current = full({1}, threshold_to_scale(abs_max(x), grid()));
  return fake_quant(x, current, -1);
}

QuantParams MovingAverageAbsMaxQuanter::quant_params() const { return symmetric_params(buffer("scale"), -1); }

std::string MovingAverageAbsMaxQuanter::extra_repr() const {
  std::string s = Quanter::extra_repr() + ", moving_rate=" + std::to_string(rate_);
  return paddle_init_ ? s + ", paddle_parity_init" : s;
}

}  // namespace qslim::quant
