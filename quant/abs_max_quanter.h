// abs_max: T = max|x| of the current tensor on every forward, in training and eval.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

class AbsMaxQuanter : public Quanter {
 public:
  explicit AbsMaxQuanter(const QuantOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  std::string type_name() const override { return "abs_max"; }
};

}  // namespace qslim::quant
