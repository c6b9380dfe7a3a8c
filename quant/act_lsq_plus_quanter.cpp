#include "quant/act_lsq_plus_quanter.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "quant/fake_quant.h"
#include "quant/lsq_init.h"
#include "quant/range_stats.h"

namespace qslim::quant {

namespace {
QuantOptions as_activation(QuantOptions o) {
  o.role = QuantRole::Activation;
  return o;
}
}  // namespace

ActLSQplusQuanter::ActLSQplusQuanter(const ActLsqOptions& options)
    : Quanter(as_activation(options)), symmetric_(options.symmetric) {
  QSLIM_CHECK(options.ste == SteMode::Clipped,
              "lsq_plus (activation): the LSQ gradient replaces the straight-through estimator; ste must be "
              "clipped, got ",
              ste_mode_name(options.ste));
  register_parameter("step", zeros({1}));
  if (!symmetric_) register_parameter("beta", zeros({1}));
  register_buffer("initialized", zeros({}, DType::I64));
}

bool ActLSQplusQuanter::initialized() const { return buffer("initialized").item() != 0; }

Tensor ActLSQplusQuanter::forward(const Tensor& x) {
  if (!initialized()) {
    NoGradGuard no_grad;
    const double qmin = static_cast<double>(grid().qmin()), qmax = static_cast<double>(grid().qmax());
    if (symmetric_) {
      step().fill_(floor_scale(abs_max(x) / qmax, "lsq_plus (activation)"));
    } else {
      const auto [mn, mx] = min_max(x);
      const double s = floor_scale((mx - mn) / (qmax - qmin), "lsq_plus (activation)");
      step().fill_(s);
      param("beta").fill_(mn - s * qmin);
    }
    buffer("initialized").fill_(1);
  }
  clamp_step_(step());
  Tensor s = step(), b = beta();
  if (s.dtype() != x.dtype()) {
    s = s.to(x.dtype());
    if (b.defined()) b = b.to(x.dtype());
  }
  return lsq_fake_quantize(x, s, b, -1, grid(), rounding());
}

QuantParams ActLSQplusQuanter::quant_params() const {
  QSLIM_CHECK(initialized(), "lsq_plus (activation): no step yet; run a forward pass or load a checkpoint first");
  const double s = floor_scale(step().item(), "lsq_plus (activation)");
  const double z = symmetric_ ? 0.0 : std::nearbyint(-param("beta").item() / s);
  QSLIM_CHECK(std::fabs(z) < 2147483647.0, "lsq_plus (activation): zero point ", z, " (beta ", param("beta").item(),
              ", step ", s, ") does not fit in i32");
  // The zero point must lie on the grid, so that 0.0 stays exactly representable (integer kernels
  // pad with it). Training can push beta just past the grid's end on a post-ReLU input (measured:
  // z = -129 on resnet20 LSQ+ W4A8); clamping shifts the range by that sliver to include 0.
  const double zc = std::clamp(z, static_cast<double>(grid().qmin()), static_cast<double>(grid().qmax()));
  return per_tensor_params(s, static_cast<int64_t>(zc), grid(), rounding());
}

double ActLSQplusQuanter::threshold() const {
  if (symmetric_) return Quanter::threshold();
  const double s = floor_scale(step().item(), "lsq_plus (activation)");
  const double b = param("beta").item();
  return std::max(std::fabs(b + s * static_cast<double>(grid().qmin())),
                  std::fabs(b + s * static_cast<double>(grid().qmax())));
}

std::string ActLSQplusQuanter::extra_repr() const {
  return Quanter::extra_repr() + (symmetric_ ? ", symmetric" : ", asymmetric");
}

}  // namespace qslim::quant
