#include "quant/abs_max_quanter.h"

#include "core/factory.h"
#include "quant/range_stats.h"

namespace qslim::quant {

AbsMaxQuanter::AbsMaxQuanter(const QuantOptions& options) : Quanter(options) {
  register_buffer("scale", zeros({1}));  // step of the last forward; 0 = none yet
}

Tensor AbsMaxQuanter::forward(const Tensor& x) {
  Tensor scale = buffer("scale");
  scale.fill_(threshold_to_scale(abs_max(x), grid()));
  return fake_quant(x, scale, -1);
}

QuantParams AbsMaxQuanter::quant_params() const { return symmetric_params(buffer("scale"), -1); }

}  // namespace qslim::quant
