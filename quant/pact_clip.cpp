// pact_clip (fake_quant.h): PACT's learnable clip, forward and a fused backward that also reduces
// the alpha gradient.
#include <cmath>

#include "autograd/arith_common.h"
#include "autograd/node.h"
#include "quant/channel_layout.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

namespace {

template <typename T>
void pact_forward(const T* x, T* y, int64_t n, T lo, T hi) {
  parallel_for(n, detail::kQuantGrain, [&](int64_t b, int64_t e) {
    const T* __restrict xi = x + b;
    T* __restrict yi = y + b;
    const T l = lo, h = hi;
    for (int64_t k = 0; k < e - b; ++k) {
      const T v = xi[k];
      yi[k] = v < l ? l : (v > h ? h : v);
    }
  });
}

// dx over [b, e) and the chunk's sum of dy * d(y)/d(alpha), accumulated in T lanes (vectorised)
// and flushed to double every block.
template <typename T>
double pact_backward_chunk(const T* x, const T* dy, T* dx, int64_t b, int64_t e, T lo, T hi, bool two_sided) {
  constexpr int kLanes = 16;
  constexpr int64_t kBlock = 4096;
  const T below = two_sided ? T(-1) : T(0);  // d(clamp)/d(alpha) where x < lo
  double total = 0;
  for (int64_t i = b; i < e;) {
    const int64_t end = std::min(e, i + kBlock);
    T lane[kLanes] = {};
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const T v = x[i + j], g = dy[i + j];
        dx[i + j] = ((v >= lo) & (v <= hi)) ? g : T(0);
        lane[j] += v > hi ? g : (v < lo ? below * g : T(0));
      }
    }
    for (; i < end; ++i) {
      const T v = x[i], g = dy[i];
      dx[i] = ((v >= lo) & (v <= hi)) ? g : T(0);
      lane[0] += v > hi ? g : (v < lo ? below * g : T(0));
    }
    for (int j = 0; j < kLanes; ++j) total += lane[j];
  }
  return total;
}

template <typename T>
Tensor pact_impl(const Tensor& x, const Tensor& alpha, bool two_sided) {
  static const char* op = "pact_clip";
  const T a = static_cast<T>(alpha.item());
  QSLIM_CHECK(std::isfinite(static_cast<double>(a)) && a > 0, op, ": alpha must be positive and finite, got ",
              static_cast<double>(a));
  const T lo = two_sided ? -a : T(0), hi = a;
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  pact_forward<T>(xc.data<T>(), y.data<T>(), x.numel(), lo, hi);
  if (!needs_grad({&x, &alpha})) return y;
  SavedTensor saved(xc);
  const Shape alpha_shape = alpha.shape();
  arith_detail::record_guarded(y, {x, alpha}, op,
                               [saved, lo, hi, two_sided, alpha_shape](const Tensor& g) -> std::vector<Tensor> {
                                 Tensor xs = saved.get(op);
                                 QSLIM_CHECK(g.dtype() == xs.dtype(), op, ": gradient dtype ", dtype_name(g.dtype()),
                                             " differs from input dtype ", dtype_name(xs.dtype()));
                                 Tensor gc = g.contiguous();
                                 Tensor dx = Tensor::empty(xs.shape(), xs.dtype());
                                 const int64_t n = xs.numel();
                                 const int64_t chunks = detail::reduction_chunks(n);
                                 std::vector<double> partial(chunks, 0.0);
                                 const T *xp = xs.data<T>(), *gp = gc.data<T>();
                                 T* dp = dx.data<T>();
                                 detail::for_each_chunk(n, chunks, [&](int64_t c, int64_t b, int64_t e) {
                                   partial[c] = pact_backward_chunk<T>(xp, gp, dp, b, e, lo, hi, two_sided);
                                 });
                                 double da = 0;
                                 for (double v : partial) da += v;
                                 Tensor dalpha = Tensor::empty(alpha_shape, xs.dtype());
                                 dalpha.fill_(da);
                                 return {dx, dalpha};
                               });
  return y;
}

}  // namespace

Tensor pact_clip(const Tensor& x, const Tensor& alpha, bool two_sided) {
  QSLIM_CHECK(x.defined() && alpha.defined(), "pact_clip: input or alpha is undefined");
  arith_detail::check_float(x, "pact_clip");
  QSLIM_CHECK(alpha.numel() == 1, "pact_clip: alpha must have one element, got shape ", shape_str(alpha.shape()));
  QSLIM_CHECK(alpha.dtype() == x.dtype(), "pact_clip: alpha dtype ", dtype_name(alpha.dtype()),
              " differs from input dtype ", dtype_name(x.dtype()));
  Tensor y;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "pact_clip", [&] { y = pact_impl<scalar_t>(x, alpha, two_sided); });
  return y;
}

}  // namespace qslim::quant
