// channel_wise_abs_max: one T_c = max|x| per channel along `axis` (0 for conv weights
// [out, in/g, kh, kw] and linear weights [out, in]), from the current tensor on every forward.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

struct ChannelWiseAbsMaxOptions : QuantOptions {
  int64_t axis = 0;
  int64_t channels = 0;  // size of `axis` in the quantized tensor; required (> 0) so the step buffer has its shape
};

class ChannelWiseAbsMaxQuanter : public Quanter {
 public:
  explicit ChannelWiseAbsMaxQuanter(const ChannelWiseAbsMaxOptions& options);

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  std::string type_name() const override { return "channel_wise_abs_max"; }
  std::string extra_repr() const override;

  int64_t axis() const { return axis_; }
  int64_t channels() const { return channels_; }

 private:
  int64_t axis_, channels_;
};

}  // namespace qslim::quant
