// lsq_fake_quantize (fake_quant.h): LSQ / LSQ+ forward, and one fused backward pass producing dx
// and the per-channel step and offset gradients.
#include <cmath>

#include "autograd/arith_common.h"
#include "autograd/node.h"
#include "quant/channel_layout.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

namespace {

using detail::ChannelLayout;
using detail::for_each_run;

template <typename T>
struct LsqParams {
  std::vector<T> s, inv, beta;
};

template <typename T>
LsqParams<T> read_lsq_params(const Tensor& step, const Tensor& beta) {
  const std::vector<double> s = step.to_vector<double>();
  const std::vector<double> b = beta.defined() ? beta.to_vector<double>() : std::vector<double>(s.size(), 0.0);
  LsqParams<T> p;
  for (size_t c = 0; c < s.size(); ++c) {
    p.s.push_back(static_cast<T>(floor_scale(s[c], "lsq_fake_quantize")));
    p.inv.push_back(T(1) / p.s.back());
    QSLIM_CHECK(std::isfinite(b[c]), "lsq_fake_quantize: beta[", c, "] is not finite (", b[c], ")");
    p.beta.push_back(static_cast<T>(b[c]));
  }
  return p;
}

template <typename T, Rounding R>
inline T lsq_value(T x, T s, T inv, T beta, T lo, T hi) {
  const T q = round_with<R>((x - beta) * inv);
  return (q < lo ? lo : (q > hi ? hi : q)) * s + beta;
}

template <typename T, Rounding R>
void lsq_forward(const T* x, T* y, const ChannelLayout& l, const LsqParams<T>& p, T lo, T hi) {
  parallel_for(l.numel(), detail::kQuantGrain, [&](int64_t b, int64_t e) {
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t n, int64_t c) {
          const T s = p.s[c], inv = p.inv[c], beta = p.beta[c];
          const T* __restrict xi = x + i;
          T* __restrict yi = y + i;
          for (int64_t k = 0; k < n; ++k) yi[k] = lsq_value<T, R>(xi[k], s, inv, beta, lo, hi);
        },
        [&](int64_t i, int64_t n, int64_t c0) {
          const T *s = p.s.data() + c0, *inv = p.inv.data() + c0, *beta = p.beta.data() + c0;
          const T* __restrict xi = x + i;
          T* __restrict yi = y + i;
          for (int64_t k = 0; k < n; ++k) yi[k] = lsq_value<T, R>(xi[k], s[k], inv[k], beta[k], lo, hi);
        });
  });
}

// One element of the backward: writes dx, returns dy * dy/ds (unscaled) and dy * dy/dbeta.
template <typename T, Rounding R>
inline void lsq_grad_one(T x, T g, T inv, T beta, T lo, T hi, T& dx, T& ds, T& db) {
  const T v = (x - beta) * inv;
  const bool in = (v >= lo) & (v <= hi);
  dx = in ? g : T(0);
  ds = g * (in ? round_with<R>(v) - v : (v < lo ? lo : hi));
  db = in ? T(0) : g;
}

// Backward over one run of a single channel, reducing in T lanes flushed to double per block.
template <typename T, Rounding R>
void lsq_backward_run(const T* x, const T* dy, T* dx, int64_t n, T inv, T beta, T lo, T hi, double& acc_s,
                      double& acc_b) {
  constexpr int kLanes = 16;
  constexpr int64_t kBlock = 4096;
  for (int64_t i = 0; i < n;) {
    const int64_t end = std::min(n, i + kBlock);
    T ls[kLanes] = {}, lb[kLanes] = {};
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        T ds, db;
        lsq_grad_one<T, R>(x[i + j], dy[i + j], inv, beta, lo, hi, dx[i + j], ds, db);
        ls[j] += ds;
        lb[j] += db;
      }
    }
    for (; i < end; ++i) {
      T ds, db;
      lsq_grad_one<T, R>(x[i], dy[i], inv, beta, lo, hi, dx[i], ds, db);
      ls[0] += ds;
      lb[0] += db;
    }
    for (int j = 0; j < kLanes; ++j) {
      acc_s += ls[j];
      acc_b += lb[j];
    }
  }
}

template <typename T, Rounding R>
void lsq_backward(const T* x, const T* dy, T* dx, const ChannelLayout& l, const LsqParams<T>& p, T lo, T hi,
                  std::vector<double>& sum_s, std::vector<double>& sum_b) {
  const int64_t n = l.numel(), channels = static_cast<int64_t>(p.s.size());
  const int64_t chunks = detail::reduction_chunks(n);
  std::vector<double> part_s(chunks * channels, 0.0), part_b(chunks * channels, 0.0);
  detail::for_each_chunk(n, chunks, [&](int64_t chunk, int64_t b, int64_t e) {
    double* ps = part_s.data() + chunk * channels;
    double* pb = part_b.data() + chunk * channels;
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t len, int64_t c) {
          lsq_backward_run<T, R>(x + i, dy + i, dx + i, len, p.inv[c], p.beta[c], lo, hi, ps[c], pb[c]);
        },
        [&](int64_t i, int64_t len, int64_t c0) {
          for (int64_t k = 0; k < len; ++k) {
            T ds, db;
            lsq_grad_one<T, R>(x[i + k], dy[i + k], p.inv[c0 + k], p.beta[c0 + k], lo, hi, dx[i + k], ds, db);
            ps[c0 + k] += ds;
            pb[c0 + k] += db;
          }
        });
  });
  sum_s.assign(channels, 0.0);
  sum_b.assign(channels, 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < channels; ++c) {
      sum_s[c] += part_s[chunk * channels + c];
      sum_b[c] += part_b[chunk * channels + c];
    }
}

template <typename T>
Tensor lsq_impl(const Tensor& x, const Tensor& step, const Tensor& beta, int64_t axis, const QuantGrid& grid,
                Rounding rounding, double g) {
  static const char* op = "lsq_fake_quantize";
  const ChannelLayout l = detail::channel_layout(x.shape(), axis);
  auto p = std::make_shared<const LsqParams<T>>(read_lsq_params<T>(step, beta));
  const T lo = static_cast<T>(grid.qmin()), hi = static_cast<T>(grid.qmax());
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (rounding == Rounding::HalfEven) {
    lsq_forward<T, Rounding::HalfEven>(xc.data<T>(), y.data<T>(), l, *p, lo, hi);
  } else {
    lsq_forward<T, Rounding::HalfAway>(xc.data<T>(), y.data<T>(), l, *p, lo, hi);
  }
  if (!needs_grad({&x, &step, &beta})) return y;
  SavedTensor saved(xc);
  const Shape step_shape = step.shape();
  const bool has_beta = beta.defined();
  arith_detail::record_guarded(
      y, {x, step, beta}, op,
      [saved, p, l, lo, hi, rounding, g, step_shape, has_beta](const Tensor& grad) -> std::vector<Tensor> {
        Tensor xs = saved.get(op);
        QSLIM_CHECK(grad.dtype() == xs.dtype(), op, ": gradient dtype ", dtype_name(grad.dtype()),
                    " differs from input dtype ", dtype_name(xs.dtype()));
        Tensor gc = grad.contiguous();
        Tensor dx = Tensor::empty(xs.shape(), xs.dtype());
        std::vector<double> sum_s, sum_b;
        if (rounding == Rounding::HalfEven) {
          lsq_backward<T, Rounding::HalfEven>(xs.data<T>(), gc.data<T>(), dx.data<T>(), l, *p, lo, hi, sum_s, sum_b);
        } else {
          lsq_backward<T, Rounding::HalfAway>(xs.data<T>(), gc.data<T>(), dx.data<T>(), l, *p, lo, hi, sum_s, sum_b);
        }
        Tensor ds = Tensor::empty(step_shape, xs.dtype()), db;
        T* dsp = ds.data<T>();
        for (size_t c = 0; c < sum_s.size(); ++c) dsp[c] = static_cast<T>(g * sum_s[c]);
        if (has_beta) {
          db = Tensor::empty(step_shape, xs.dtype());
          T* dbp = db.data<T>();
          for (size_t c = 0; c < sum_b.size(); ++c) dbp[c] = static_cast<T>(g * sum_b[c]);
        }
        return {dx, ds, db};
      });
  return y;
}

}  // namespace

double lsq_grad_scale(int64_t elements_per_scale, const QuantGrid& grid) {
  QSLIM_CHECK(elements_per_scale > 0, "lsq_grad_scale: elements per scale must be positive, got ", elements_per_scale);
  return 1.0 / std::sqrt(static_cast<double>(elements_per_scale) * static_cast<double>(grid.qmax()));
}

Tensor lsq_fake_quantize(const Tensor& x, const Tensor& step, const Tensor& beta, int64_t axis, const QuantGrid& grid,
                         Rounding rounding, std::optional<double> grad_scale) {
  static const char* op = "lsq_fake_quantize";
  QSLIM_CHECK(x.defined(), op, ": input is undefined");
  arith_detail::check_float(x, op);
  check_quant_args(step, Tensor(), axis, x.shape(), op);
  QSLIM_CHECK(step.dtype() == x.dtype(), op, ": step dtype ", dtype_name(step.dtype()), " differs from input dtype ",
              dtype_name(x.dtype()));
  if (beta.defined()) {
    QSLIM_CHECK(beta.dtype() == x.dtype(), op, ": beta dtype ", dtype_name(beta.dtype()), " differs from input dtype ",
                dtype_name(x.dtype()));
    QSLIM_CHECK(beta.shape() == step.shape(), op, ": beta ", shape_str(beta.shape()), " does not match step ",
                shape_str(step.shape()));
  }
  QSLIM_CHECK(x.numel() > 0, op, ": empty input ", shape_str(x.shape()));
  const double g = grad_scale ? *grad_scale : lsq_grad_scale(x.numel() / step.numel(), grid);
  QSLIM_CHECK(std::isfinite(g), op, ": grad_scale must be finite, got ", g);
  Tensor y;
  QSLIM_DISPATCH_FLOAT(x.dtype(), op, [&] { y = lsq_impl<scalar_t>(x, step, beta, axis, grid, rounding, g); });
  return y;
}

}  // namespace qslim::quant
