#include "quant/tensor_observer.h"

#include <cmath>

#include "core/error.h"
#include "core/factory.h"

namespace qslim::quant {

TensorObserver::TensorObserver(const QuanterOptions& options, std::string type)
    : Observer(options), type_(std::move(type)) {
  QSLIM_CHECK(options.preprocess == Preprocess::None, type_, ": PTQ observers take no preprocess (got ",
              preprocess_name(options.preprocess), "); PACT is a QAT technique");
  register_buffer("scale", zeros({1}));  // frozen step; 0 = not finalized yet
}

bool TensorObserver::finalized() const {
  if (finalized_ || role() == QuantRole::Weight) return true;
  return batches_ == 0 && buffer("scale").item() > 0;  // loaded from a checkpoint
}

double TensorObserver::checked_threshold() const {
  const double t = compute_threshold();
  QSLIM_CHECK(std::isfinite(t) && t >= 0, type_, ": computed threshold ", t, " is not a finite value >= 0");
  return t;
}

void TensorObserver::freeze() const {
  QSLIM_CHECK(batches_ > 0, type_,
              " observer: no calibration batch observed yet; run calibration batches through the model "
              "before finalize() or quant_params()");
  Tensor scale = buffer("scale");
  scale.fill_(threshold_to_scale(checked_threshold(), grid()));
  finalized_ = true;
}

void TensorObserver::finalize() {
  if (role() == QuantRole::Weight) {
    QSLIM_CHECK(batches_ > 0, type_, " observer (weight): no forward pass seen yet; run one on the weight first");
    return;
  }
  if (!finalized()) freeze();
}

Tensor TensorObserver::forward(const Tensor& x) {
  QSLIM_CHECK(x.defined(), type_, ": input is undefined");
  QSLIM_CHECK(x.is_floating_point(), type_, ": expected an f32 or f64 tensor, got ", dtype_name(x.dtype()), " ",
              shape_str(x.shape()));
  if (role() == QuantRole::Weight) {
    reset();
    if (x.numel() > 0) observe(x.detach());
    ++batches_;
    Tensor scale = buffer("scale");
    scale.fill_(threshold_to_scale(checked_threshold(), grid()));
    return fake_quant(x, scale, -1);
  }
  if (finalized()) return fake_quant(x, buffer("scale"), -1);
  if (x.numel() > 0) {
    observe(x.detach());
    ++batches_;
  }
  return x;
}

QuantParams TensorObserver::quant_params() const {
  if (!finalized()) freeze();
  return symmetric_params(buffer("scale"), -1);
}

std::string TensorObserver::extra_repr() const {
  const std::string extra = observer_repr();
  return Quanter::extra_repr() + (extra.empty() ? "" : ", " + extra);
}

}  // namespace qslim::quant
