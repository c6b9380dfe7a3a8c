#include "quant/channel_wise_abs_max_quanter.h"

#include "core/factory.h"
#include "quant/range_stats.h"

namespace qslim::quant {

ChannelWiseAbsMaxQuanter::ChannelWiseAbsMaxQuanter(const ChannelWiseAbsMaxOptions& options)
    : Quanter(options), axis_(options.axis), channels_(options.channels) {
  QSLIM_CHECK(options.axis >= 0, "channel_wise_abs_max: axis must be >= 0, got ", options.axis);
  QSLIM_CHECK(options.channels > 0, "channel_wise_abs_max: channels must be positive (the size of axis ", options.axis,
              " of the quantized tensor), got ", options.channels);
  register_buffer("scale", zeros({channels_}));  // steps of the last forward; 0 = none yet
}

Tensor ChannelWiseAbsMaxQuanter::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() > axis_ && x.size(axis_) == channels_, "channel_wise_abs_max: input ", shape_str(x.shape()),
              " does not have ", channels_, " channels along axis ", axis_);
  Tensor scale = buffer("scale");
  const std::vector<double> t = abs_max_per_channel(x, axis_);
  float* s = scale.data<float>();
  for (int64_t c = 0; c < channels_; ++c) s[c] = static_cast<float>(threshold_to_scale(t[c], grid()));
  scale.bump_version();
  return fake_quant(x, scale, axis_);
}

QuantParams ChannelWiseAbsMaxQuanter::quant_params() const { return symmetric_params(buffer("scale"), axis_); }

std::string ChannelWiseAbsMaxQuanter::extra_repr() const {
  return Quanter::extra_repr() + ", axis=" + std::to_string(axis_) + ", channels=" + std::to_string(channels_);
}

}  // namespace qslim::quant
