// LSQ+ activation quanter: learnable step "step" and offset "beta" (one each), initialised from
// the first batch: s = (max - min)/(qmax - qmin), beta = min - s*qmin. `symmetric` drops beta
// (s = max|x| / qmax instead). Signed grid by default, unsigned as an option; rounding HalfAway
// gives PaddleSlim parity. The role is always Activation; options.ste must stay Clipped.
// quant_params() turns beta into the integer zero point z = round(-beta / s), exact when beta/s
// is an integer.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

struct ActLsqOptions : QuantOptions {
  bool symmetric = false;
};

class ActLSQplusQuanter : public Quanter {
 public:
  explicit ActLSQplusQuanter(const ActLsqOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  // Asymmetric: max(|beta + s*qmin|, |beta + s*qmax|), the largest magnitude representable;
  // symmetric: s * qmax like every other quanter.
  double threshold() const override;
  std::string type_name() const override { return "lsq_plus"; }
  std::string extra_repr() const override;

  Tensor step() const { return param("step"); }
  Tensor beta() const { return symmetric_ ? Tensor() : param("beta"); }
  bool symmetric() const { return symmetric_; }
  bool initialized() const;

 private:
  bool symmetric_;
};

}  // namespace qslim::quant
