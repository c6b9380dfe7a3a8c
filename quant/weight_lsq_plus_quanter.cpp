#include "quant/weight_lsq_plus_quanter.h"

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

namespace {
QuantOptions as_weight(QuantOptions o) {
  o.role = QuantRole::Weight;
  return o;
}
}  // namespace

WeightLSQplusQuanter::WeightLSQplusQuanter(const WeightLsqOptions& options)
    : Quanter(as_weight(options)),
      axis_(options.per_channel ? options.axis : -1),
      channels_(options.per_channel ? options.channels : 1),
      init_(options.init) {
  QSLIM_CHECK(options.ste == SteMode::Clipped,
              "lsq_plus (weight): the LSQ gradient replaces the straight-through estimator; ste must be clipped, got ",
              ste_mode_name(options.ste));
  if (options.per_channel) {
    QSLIM_CHECK(options.axis >= 0, "lsq_plus (weight): axis must be >= 0, got ", options.axis);
    QSLIM_CHECK(options.channels > 0, "lsq_plus (weight): per-channel steps need channels > 0 (the size of axis ",
                options.axis, "), got ", options.channels);
  }
  register_parameter("step", zeros({channels_}));
  register_buffer("initialized", zeros({}, DType::I64));
}

bool WeightLSQplusQuanter::initialized() const { return buffer("initialized").item() != 0; }

Tensor WeightLSQplusQuanter::forward(const Tensor& x) {
  if (axis_ >= 0)
    QSLIM_CHECK(x.dim() > axis_ && x.size(axis_) == channels_, "lsq_plus (weight): input ", shape_str(x.shape()),
                " does not have ", channels_, " channels along axis ", axis_);
  Tensor s = step();
  if (!initialized()) {
    NoGradGuard no_grad;
    const std::vector<double> init = lsq_weight_init(x, axis_, grid(), init_);
    s.copy_(from_vector(init, {channels_}));
    buffer("initialized").fill_(1);
  }
  clamp_step_(s);
  Tensor sx = s.dtype() == x.dtype() ? s : s.to(x.dtype());
  return lsq_fake_quantize(x, sx, Tensor(), axis_, grid(), rounding());
}

QuantParams WeightLSQplusQuanter::quant_params() const {
  QSLIM_CHECK(initialized(), "lsq_plus (weight): no step yet; run a forward pass or load a checkpoint first");
  return per_channel_params(step().to_vector<double>(), axis_, grid(), rounding());
}

std::string WeightLSQplusQuanter::extra_repr() const {
  std::string s = Quanter::extra_repr() + ", init=" + lsq_init_name(init_);
  return axis_ >= 0 ? s + ", axis=" + std::to_string(axis_) + ", channels=" + std::to_string(channels_) : s;
}

}  // namespace qslim::quant
