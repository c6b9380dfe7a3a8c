// Losses (ops_loss.h). cross_entropy is fused: one pass computes log-sum-exp, the per-sample loss
// and the softmax that backward turns into the gradient p - (1 - eps) onehot - eps / C.
#include "autograd/ops_loss.h"

#include "autograd/node.h"
#include "core/cpu/softmax.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

namespace {

// Checks logits/log-probs [N, C] against i64 targets [N] with values in [0, C).
void check_class_targets(const Tensor& input, const Tensor& target, const char* op) {
  QSLIM_CHECK(input.is_floating_point(), op, ": input must be f32 or f64, got ", dtype_name(input.dtype()),
              " of shape ", shape_str(input.shape()));
  QSLIM_CHECK(input.dim() == 2, op, ": expected input of shape [N, C], got ", shape_str(input.shape()));
  QSLIM_CHECK(target.dtype() == DType::I64, op, ": target must hold i64 class indices, got ",
              dtype_name(target.dtype()), " of shape ", shape_str(target.shape()));
  QSLIM_CHECK(target.dim() == 1 && target.size(0) == input.size(0), op, ": input ", shape_str(input.shape()),
              " and target ", shape_str(target.shape()), " disagree on the batch size (target must be [N])");
  const int64_t C = input.size(1);
  Tensor t = target.contiguous();
  const int64_t* p = t.data<int64_t>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    QSLIM_CHECK(p[i] >= 0 && p[i] < C, op, ": target value ", p[i], " at position ", i, " is out of range [0, ", C,
                ") for ", C, " classes");
}

// Unbatched form: input [C] with a scalar target is treated as a batch of one.
bool unbatched(const Tensor& input, const Tensor& target) { return input.dim() == 1 && target.dim() == 0; }

double reduction_scale(Reduction r, int64_t n) { return r == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0; }

// Reduces per-element losses; Mean over zero elements is NaN, as in PyTorch.
Tensor reduce_losses(const Tensor& losses, Reduction r) {
  if (r == Reduction::None) return losses;
  double s = kernels::sum_all(losses) * reduction_scale(r, losses.numel());
  return scalar_tensor(s, losses.dtype());
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing, Reduction reduction) {
  if (unbatched(logits, target)) {
    Tensor out = cross_entropy(logits.unsqueeze(0), target.reshape({1}), label_smoothing, reduction);
    return reduction == Reduction::None ? out.reshape({}) : out;
  }
  check_class_targets(logits, target, "cross_entropy");
  QSLIM_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const bool grad = needs_grad({&logits});
  cpu::CrossEntropyForward f = cpu::cross_entropy_forward(logits.detach(), target, label_smoothing, grad);
  Tensor out = reduce_losses(f.losses, reduction);
  if (grad) {
    SavedTensor sp(f.probs), st(target);
    const double scale = reduction_scale(reduction, logits.size(0));
    record(out, {logits}, "cross_entropy",
           [sp, st, scale, label_smoothing](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             if (!g[0].defined()) return {Tensor()};
             return {cpu::cross_entropy_backward(sp.get("cross_entropy"), st.get("cross_entropy"), g[0], scale,
                                                 label_smoothing)};
           });
  }
  return out;
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction) {
  if (unbatched(log_probs, target)) {
    Tensor out = nll_loss(log_probs.unsqueeze(0), target.reshape({1}), reduction);
    return reduction == Reduction::None ? out.reshape({}) : out;
  }
  check_class_targets(log_probs, target, "nll_loss");
  const int64_t N = log_probs.size(0), C = log_probs.size(1);
  Tensor lp = log_probs.detach().contiguous();
  Tensor tc = target.contiguous();
  Tensor losses = Tensor::empty({N}, log_probs.dtype());
  QSLIM_DISPATCH_FLOAT(log_probs.dtype(), "nll_loss", [&] {
    const scalar_t* p = lp.data<scalar_t>();
    const int64_t* t = tc.data<int64_t>();
    scalar_t* l = losses.data<scalar_t>();
    for (int64_t i = 0; i < N; ++i) l[i] = -p[i * C + t[i]];
  });
  Tensor out = reduce_losses(losses, reduction);
  if (needs_grad({&log_probs})) {
    SavedTensor st(target);
    const double scale = reduction_scale(reduction, N);
    const DType dt = log_probs.dtype();
    record(out, {log_probs}, "nll_loss", [st, scale, N, C, dt](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor t = st.get("nll_loss").contiguous();
      Tensor gc = g[0].to(dt).contiguous();
      Tensor gx = zeros({N, C}, dt);
      QSLIM_DISPATCH_FLOAT(dt, "nll_loss_backward", [&] {
        const int64_t* ti = t.data<int64_t>();
        const scalar_t* gp = gc.data<scalar_t>();
        scalar_t* q = gx.data<scalar_t>();
        const int64_t gs = gc.numel() == 1 ? 0 : 1;
        for (int64_t i = 0; i < N; ++i) q[i * C + ti[i]] = -gp[i * gs] * static_cast<scalar_t>(scale);
      });
      return {gx};
    });
  }
  return out;
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  QSLIM_CHECK(input.is_floating_point() && input.dtype() == target.dtype(),
              "mse_loss: input and target must share a floating dtype, got ", dtype_name(input.dtype()), " and ",
              dtype_name(target.dtype()));
  // No silent broadcasting: PyTorch only warns, and a [N] vs [N, 1] mix-up trains on garbage.
  QSLIM_CHECK(input.shape() == target.shape(), "mse_loss: input ", shape_str(input.shape()), " and target ",
              shape_str(target.shape()), " must have the same shape");
  Tensor diff = kernels::sub(input.detach(), target.detach());
  Tensor out = reduce_losses(kernels::mul(diff, diff), reduction);
  if (needs_grad({&input, &target})) {
    SavedTensor sd(diff);
    const double scale = 2.0 * reduction_scale(reduction, input.numel());
    const bool gi = input.requires_grad(), gt = target.requires_grad();
    const bool per_element = reduction == Reduction::None;
    record(out, {input, target}, "mse_loss",
           [sd, scale, gi, gt, per_element](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             if (!g[0].defined()) return {Tensor(), Tensor()};
             Tensor d = sd.get("mse_loss");
             Tensor gx = per_element ? kernels::mul(d, g[0]) : kernels::mul_scalar(d, g[0].item());
             kernels::scale_inplace(gx, scale);
             Tensor gtarget = gt ? kernels::mul_scalar(gx, -1.0) : Tensor();
             return {gi ? gx : Tensor(), gtarget};
           });
  }
  return out;
}

}  // namespace qslim
