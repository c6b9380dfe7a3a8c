// LSQ / LSQ+ weight quanter: a learnable step per tensor or per channel (parameter "step"),
// initialised from the weight on the first forward (LSQ+ by default, see lsq_init.h), trained with
// LSQ's gradients and grad scale g = 1/sqrt(N * qmax), N = elements per step. Symmetric, narrow
// grid by default; the role is always Weight. The LSQ gradient replaces the STE, so options.ste
// must stay Clipped.
#pragma once
#include "quant/lsq_init.h"
#include "quant/quanter.h"

namespace qslim::quant {

struct WeightLsqOptions : QuantOptions {
  bool per_channel = false;
  int64_t axis = 0;      // channel axis when per_channel
  int64_t channels = 0;  // size of `axis`; required when per_channel
  LsqInit init = LsqInit::LsqPlus;
};

class WeightLSQplusQuanter : public Quanter {
 public:
  explicit WeightLSQplusQuanter(const WeightLsqOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  std::string type_name() const override { return "lsq_plus"; }
  std::string extra_repr() const override;

  Tensor step() const { return param("step"); }
  bool initialized() const;
  int64_t axis() const { return axis_; }  // -1 when per tensor

 private:
  int64_t axis_, channels_;
  LsqInit init_;
};

}  // namespace qslim::quant
