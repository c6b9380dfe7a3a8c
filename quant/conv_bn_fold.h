// Conv2D + BatchNorm2D folding for QAT (QUANT_SPEC.md §5, Krishnamoorthi 2018 §3.2, as in
// PyTorch's ConvBn2d): the quantized weight is the folded one, W * gamma / sqrt(running_var + eps)
// per output channel, so inference sees exactly the trained integers.
//
//   training, statistics not frozen:
//     z = conv(aq(x), wq(W * f)) / f + b,  f = gamma / sqrt(running_var + eps)
//     y = batch_norm(z) with batch statistics (updating the running ones)
//   which equals conv(aq(x), wq(W f)) * sigma_run / sigma_batch + beta - gamma (mu_batch - b) / sigma_batch,
//   the whitepaper's correction of running by batch sigma, with the batch statistics taken from the
//   quantized conv (no second float conv);
//   eval, or training after freeze_bn_after_steps QAT steps (running statistics frozen):
//     y = conv(aq(x), wq(W f), beta + (b - running_mean) * f)
//   which convert() stores as an ordinary converted conv with that bias.
// Unlike PaddleSlim the float W stays the trained parameter (nothing is overwritten each step)
// and the fold divides by sqrt(var + eps), not by the variance.
//
// The BatchNorm2D's slot keeps a FoldedBatchNorm2D: an identity in forward that holds the BN's
// parameters and buffers under their old names, so checkpoints and optimizers see them unchanged.
#pragma once
#include <memory>

#include "nn/batchnorm.h"
#include "quant/quant_layers.h"

namespace qslim::quant {

class FoldedBatchNorm2D : public nn::Module {
 public:
  // Takes over bn's tensors (the same handles); bn must track running statistics.
  explicit FoldedBatchNorm2D(const nn::BatchNorm2D& bn);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "FoldedBatchNorm2D"; }
  std::string extra_repr() const override;

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return has_param("weight"); }
  Tensor gamma() const;  // weight, or ones when not affine
  Tensor beta() const;   // bias, or zeros when not affine

 private:
  int64_t num_features_;
  double eps_, momentum_;
};

class QuantedConvBN2D : public QuantedWeightLayer {
 public:
  // freeze_bn_after_steps: -1 never, else the number of training forwards that use batch
  // statistics (counted in the buffer "qat_steps").
  QuantedConvBN2D(std::shared_ptr<nn::Conv2D> conv, std::shared_ptr<FoldedBatchNorm2D> bn, QuanterPtr weight_quanter,
                  QuanterPtr activation_quanter, int64_t freeze_bn_after_steps);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantedConvBN2D"; }
  std::string extra_repr() const override;
  std::shared_ptr<ConvertedLayer> convert() override;

  const nn::Conv2D& geometry() const { return *conv_; }
  const std::shared_ptr<FoldedBatchNorm2D>& folded_bn() const { return bn_; }
  int64_t freeze_bn_after_steps() const { return freeze_after_; }
  int64_t qat_steps() const;
  bool bn_frozen() const { return freeze_after_ >= 0 && qat_steps() >= freeze_after_; }
  // W * f and beta + (b - running_mean) * f from the current running statistics (differentiable
  // in W, gamma, beta, b).
  Tensor folded_weight() const;
  Tensor folded_bias() const;

 private:
  Tensor fold_factor() const;  // f = gamma / sqrt(running_var + eps), [C]
  std::shared_ptr<nn::Conv2D> conv_;
  std::shared_ptr<FoldedBatchNorm2D> bn_;  // not a child: it stays in its own slot of the parent
  int64_t freeze_after_;
};

}  // namespace qslim::quant
