#include "quant/channel_wise_weight_observers.h"

#include <cmath>
#include <limits>

#include "core/factory.h"
#include "quant/search_observer.h"

namespace qslim::quant {

namespace {

QuantOptions as_weight(const QuanterOptions& options) {
  QuantOptions o = options;
  o.role = QuantRole::Weight;
  return o;
}

double channel_abs_max(const double* w, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(w[i]);
    m = a > m ? a : m;  // NaN is skipped
  }
  return m;
}

}  // namespace

ChannelWiseWeightObserver::ChannelWiseWeightObserver(const QuanterOptions& options, std::string type)
    : Observer(as_weight(options)), type_(std::move(type)), axis_(options.axis), channels_(options.channels) {
  QSLIM_CHECK(options.preprocess == Preprocess::None, type_, ": PTQ observers take no preprocess (got ",
              preprocess_name(options.preprocess), "); PACT is a QAT technique");
  QSLIM_CHECK(axis_ >= 0, type_, ": axis must be >= 0, got ", axis_);
  QSLIM_CHECK(channels_ > 0, type_, ": channels must be positive (the size of axis ", axis_,
              " of the weight), got ", channels_);
  register_buffer("scale", zeros({channels_}));  // steps of the last forward; 0 = none yet
}

Tensor ChannelWiseWeightObserver::forward(const Tensor& x) {
  QSLIM_CHECK(x.defined(), type_, ": input is undefined");
  QSLIM_CHECK(x.is_floating_point(), type_, ": expected an f32 or f64 tensor, got ", dtype_name(x.dtype()), " ",
              shape_str(x.shape()));
  QSLIM_CHECK(x.dim() > axis_ && x.size(axis_) == channels_, type_, ": input ", shape_str(x.shape()),
              " does not have ", channels_, " channels along axis ", axis_);
  // [channels, rest] in f64: the weight is small, and the transposed copy makes each channel a row.
  const Tensor rows = x.detach().to(DType::F64).transpose(0, axis_).contiguous();
  const int64_t per_channel = channels_ > 0 ? x.numel() / channels_ : 0;
  const std::vector<double> t = thresholds(rows.data<double>(), per_channel);
  Tensor scale = buffer("scale");
  float* s = scale.data<float>();
  for (int64_t c = 0; c < channels_; ++c) {
    QSLIM_CHECK(std::isfinite(t[c]), type_, ": channel ", c, " of weight ", shape_str(x.shape()),
                " has a non-finite threshold ", t[c]);
    s[c] = static_cast<float>(threshold_to_scale(t[c], grid()));
  }
  scale.bump_version();
  ++forwards_;
  return fake_quant(x, scale, axis_);
}

void ChannelWiseWeightObserver::finalize() {
  QSLIM_CHECK(forwards_ > 0 || buffer("scale").to_vector<double>()[0] > 0, type_,
              " observer (weight): no forward pass seen yet; run one on the weight first");
}

QuantParams ChannelWiseWeightObserver::quant_params() const { return symmetric_params(buffer("scale"), axis_); }

std::string ChannelWiseWeightObserver::extra_repr() const {
  return Quanter::extra_repr() + ", axis=" + std::to_string(axis_) + ", channels=" + std::to_string(channels_);
}

AbsMaxChannelWiseWeightObserver::AbsMaxChannelWiseWeightObserver(const QuanterOptions& options)
    : ChannelWiseWeightObserver(options, "AbsMaxChannelWiseWeightObserver") {}

std::vector<double> AbsMaxChannelWiseWeightObserver::thresholds(const double* x, int64_t per_channel) const {
  std::vector<double> t(channels());
  for (int64_t c = 0; c < channels(); ++c) t[c] = channel_abs_max(x + c * per_channel, per_channel);
  return t;
}

MSEChannelWiseWeightObserver::MSEChannelWiseWeightObserver(const QuanterOptions& options)
    : ChannelWiseWeightObserver(options, "MSEChannelWiseWeightObserver"),
      factors_(search_factors(options.observer.search_min, options.observer.search_step,
                              "MSEChannelWiseWeightObserver")) {}

std::vector<double> MSEChannelWiseWeightObserver::thresholds(const double* x, int64_t per_channel) const {
  std::vector<double> t(channels());
  for (int64_t c = 0; c < channels(); ++c) {
    const double* w = x + c * per_channel;
    const double m = channel_abs_max(w, per_channel);
    t[c] = m;
    if (m <= 0) continue;
    double best = std::numeric_limits<double>::infinity();
    for (double k : factors_) {
      const double s = threshold_to_scale(k * m, grid());
      double err = 0;
      for (int64_t i = 0; i < per_channel; ++i) {
        if (std::isnan(w[i])) continue;
        const double d = w[i] - quant_dequant(w[i], s, grid(), rounding());
        err += d * d;
      }
      if (err < best) {
        best = err;
        t[c] = k * m;
      }
    }
  }
  return t;
}

}  // namespace qslim::quant
