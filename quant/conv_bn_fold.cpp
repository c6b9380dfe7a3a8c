#include "quant/conv_bn_fold.h"

#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops_arith.h"
#include "autograd/ops_conv.h"
#include "autograd/ops_norm.h"
#include "core/factory.h"

namespace qslim::quant {

// ---------------------------------------------------------------- FoldedBatchNorm2D

FoldedBatchNorm2D::FoldedBatchNorm2D(const nn::BatchNorm2D& bn)
    : num_features_(bn.num_features()), eps_(bn.eps()), momentum_(bn.momentum()) {
  QSLIM_CHECK(bn.track_running_stats(), "FoldedBatchNorm2D: the BatchNorm2D(", bn.num_features(),
              ") does not track running statistics, so it cannot be folded");
  if (bn.affine()) {
    for (const char* n : {"weight", "bias"}) {
      const Tensor t = bn.param(n);
      register_parameter(n, t, t.requires_grad());
    }
  }
  for (const char* n : {"running_mean", "running_var", "num_batches_tracked"}) register_buffer(n, bn.buffer(n));
  train(bn.is_training());
}

Tensor FoldedBatchNorm2D::gamma() const {
  return affine() ? param("weight") : ones({num_features_}, buffer("running_var").dtype());
}

Tensor FoldedBatchNorm2D::beta() const {
  return affine() ? param("bias") : zeros({num_features_}, buffer("running_var").dtype());
}

std::string FoldedBatchNorm2D::extra_repr() const {
  std::ostringstream os;
  os << num_features_ << ", eps=" << eps_ << ", momentum=" << momentum_ << ", folded into the preceding conv";
  return os.str();
}

// ---------------------------------------------------------------- QuantedConvBN2D

QuantedConvBN2D::QuantedConvBN2D(std::shared_ptr<nn::Conv2D> conv, std::shared_ptr<FoldedBatchNorm2D> bn,
                                 QuanterPtr weight_quanter, QuanterPtr activation_quanter,
                                 int64_t freeze_bn_after_steps)
    : QuantedWeightLayer(conv ? QuantConfig::quant_type_of(*conv) : "",
                         conv ? *conv : throw Error("QuantedConvBN2D: null conv"), std::move(weight_quanter),
                         std::move(activation_quanter)),
      conv_(std::move(conv)),
      bn_(std::move(bn)),
      freeze_after_(freeze_bn_after_steps) {
  QSLIM_CHECK(bn_ != nullptr, "QuantedConvBN2D: null batch norm");
  QSLIM_CHECK(bn_->num_features() == conv_->out_channels(), "QuantedConvBN2D: BatchNorm2D(", bn_->num_features(),
              ") does not match the conv's ", conv_->out_channels(), " output channels");
  QSLIM_CHECK(freeze_after_ >= -1, "QuantedConvBN2D: freeze_bn_after_steps must be -1 (never) or >= 0, got ",
              freeze_after_);
  register_buffer("qat_steps", zeros({}, DType::I64));
}

int64_t QuantedConvBN2D::qat_steps() const { return buffer("qat_steps").item<int64_t>(); }

Tensor QuantedConvBN2D::fold_factor() const {
  // The running variance is a constant of this step (batch_norm updates it in place afterwards).
  Tensor inv_std = pow(bn_->buffer("running_var").detach().clone() + bn_->eps(), -0.5);
  return bn_->gamma() * inv_std;
}

Tensor QuantedConvBN2D::folded_weight() const {
  return weight() * fold_factor().reshape({conv_->out_channels(), 1, 1, 1});
}

Tensor QuantedConvBN2D::folded_bias() const {
  Tensor mean = bn_->buffer("running_mean").detach().clone();
  Tensor shifted = has_bias() ? bias() - mean : neg(mean);
  return bn_->beta() + shifted * fold_factor();
}

Tensor QuantedConvBN2D::forward(const Tensor& x) {
  QSLIM_CHECK(x.dim() == 4 && x.size(1) == conv_->in_channels(), "QuantedConvBN2D: expected input [N, ",
              conv_->in_channels(), ", H, W], got ", shape_str(x.shape()));
  const bool batch_stats = is_training() && !bn_frozen();
  if (is_training()) {
    Tensor steps = buffer("qat_steps");
    steps.fill_(static_cast<double>(steps.item<int64_t>() + 1));
  }
  Tensor xq = activation_quanter()(x);
  if (!batch_stats) return conv2d(xq, weight_quanter()(folded_weight()), folded_bias(), conv_->conv_params());

  const int64_t c = conv_->out_channels();
  Tensor f = fold_factor();
  Tensor z = conv2d(xq, weight_quanter()(weight() * f.reshape({c, 1, 1, 1})), Tensor(), conv_->conv_params());
  // A channel with gamma == 0 has an all-zero folded weight, so its conv output is exactly 0;
  // dividing it by 1 instead of 0 keeps it 0 (batch norm then outputs beta there).
  std::vector<double> zero_mask(static_cast<size_t>(c), 0.0);
  bool any_zero = false;
  const std::vector<double> g = bn_->gamma().to_vector<double>();
  for (int64_t i = 0; i < c; ++i)
    if (g[i] == 0.0) zero_mask[i] = 1.0, any_zero = true;
  Tensor divisor = any_zero ? f + from_vector<double>(zero_mask, {c}).to(f.dtype()) : f;
  z = z / divisor.reshape({1, c, 1, 1});
  if (has_bias()) z = z + bias().reshape({1, c, 1, 1});
  Tensor y = batch_norm(z, bn_->buffer("running_mean"), bn_->buffer("running_var"),
                        bn_->affine() ? bn_->param("weight") : Tensor(), bn_->affine() ? bn_->param("bias") : Tensor(),
                        /*training=*/true, bn_->momentum(), bn_->eps());
  Tensor tracked = bn_->buffer("num_batches_tracked");
  tracked.fill_(static_cast<double>(tracked.item<int64_t>() + 1));
  return y;
}

std::shared_ptr<ConvertedLayer> QuantedConvBN2D::convert() {
  Tensor wf, bf;
  {
    NoGradGuard no_grad;
    wf = folded_weight();
    bf = folded_bias();
  }
  const QuantParams wp = freeze_weight(wf);
  const QuantParams ip = freeze_input();
  auto c = std::make_shared<ConvertedConv2D>(*conv_, quant_type(), wp.grid, wp.axis, ActQuantSpec{ip.grid, ip.rounding},
                                             /*has_bias=*/true);
  c->set_weight(wf, wp);
  c->set_input(ip);
  c->set_bias(bf.to(DType::F32));
  c->train(is_training());
  return c;
}

std::string QuantedConvBN2D::extra_repr() const {
  return conv_->extra_repr() + ", folded BatchNorm2D(" + std::to_string(bn_->num_features()) +
         "), freeze_bn_after_steps=" + std::to_string(freeze_after_);
}

}  // namespace qslim::quant
