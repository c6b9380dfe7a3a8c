// PACT preprocessing: y = inner(pact_clip(x, alpha)) with a learnable clip alpha (one scalar per
// quantized tensor, parameter "alpha"), two-sided clamp(x, -alpha, alpha) by default (PaddleSlim)
// or one-sided clamp(x, 0, alpha) for post-ReLU tensors (the paper). The wrapped quanter is the
// child "quanter" and sees the clipped tensor; quant_params() and threshold() are its own.
#pragma once
#include "quant/quanter.h"

namespace qslim::quant {

struct PactOptions {
  double alpha = 20.0;  // initial clip (PaddleSlim's static default)
  bool two_sided = true;
  double l2 = 0.0;  // coefficient of l2_loss()
};

class PactQuanter : public Quanter {
 public:
  PactQuanter(QuanterPtr inner, const PactOptions& options = {});

  using Quanter::forward;
  Tensor forward(const Tensor& x) override;
  QuantParams quant_params() const override;
  double threshold() const override;
  std::string type_name() const override { return "pact"; }
  std::string extra_repr() const override;

  Quanter& inner() const;
  Tensor alpha() const { return param("alpha"); }
  bool two_sided() const { return options_.two_sided; }
  // l2 * alpha^2 as a differentiable scalar [], to add to the training loss (PACT's L2 on alpha).
  Tensor l2_loss() const;

 private:
  PactOptions options_;
};

}  // namespace qslim::quant
