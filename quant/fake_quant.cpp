// fake_quantize, quantize and dequantize (fake_quant.h): one fused pass per direction.
#include "quant/fake_quant.h"

#include "autograd/arith_common.h"
#include "autograd/node.h"
#include "quant/channel_layout.h"

namespace qslim::quant {

namespace {

using detail::ChannelLayout;
using detail::ChannelParams;
using detail::for_each_run;
using detail::kQuantGrain;

template <typename T>
ChannelParams<T> read_params(const Tensor& scale, const Tensor& zero_point, const char* op) {
  const std::vector<double> s = scale.to_vector<double>();
  const std::vector<int64_t> z = zero_point.defined() ? zero_point.to_vector<int64_t>() : std::vector<int64_t>();
  ChannelParams<T> p;
  p.s.resize(s.size());
  p.inv.resize(s.size());
  p.z.assign(s.size(), T(0));
  for (size_t c = 0; c < s.size(); ++c) {
    p.s[c] = static_cast<T>(floor_scale(s[c], op));
    p.inv[c] = T(1) / p.s[c];
    if (!z.empty()) p.z[c] = static_cast<T>(z[c]);
  }
  return p;
}

// round(x/s) + z before clamping: the value both the forward and the clipped-STE mask use.
template <typename T, Rounding R>
inline T shifted_level(T x, T inv, T z) {
  return round_with<R>(x * inv) + z;
}

template <typename T>
inline T clamp_level(T q, T lo, T hi) {
  return q < lo ? lo : (q > hi ? hi : q);  // NaN passes through
}

template <typename T, Rounding R>
void fq_forward(const T* x, T* y, const ChannelLayout& l, const ChannelParams<T>& p, T lo, T hi) {
  parallel_for(l.numel(), kQuantGrain, [&](int64_t b, int64_t e) {
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t n, int64_t c) {
          const T s = p.s[c], inv = p.inv[c], z = p.z[c];
          const T* __restrict xi = x + i;
          T* __restrict yi = y + i;
          for (int64_t k = 0; k < n; ++k) yi[k] = (clamp_level(shifted_level<T, R>(xi[k], inv, z), lo, hi) - z) * s;
        },
        [&](int64_t i, int64_t n, int64_t c0) {
          const T *s = p.s.data() + c0, *inv = p.inv.data() + c0, *z = p.z.data() + c0;
          const T* __restrict xi = x + i;
          T* __restrict yi = y + i;
          for (int64_t k = 0; k < n; ++k)
            yi[k] = (clamp_level(shifted_level<T, R>(xi[k], inv[k], z[k]), lo, hi) - z[k]) * s[k];
        });
  });
}

template <typename T, Rounding R>
void fq_backward(const T* x, const T* dy, T* dx, const ChannelLayout& l, const ChannelParams<T>& p, T lo, T hi) {
  parallel_for(l.numel(), kQuantGrain, [&](int64_t b, int64_t e) {
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t n, int64_t c) {
          const T inv = p.inv[c], z = p.z[c];
          const T* __restrict xi = x + i;
          const T* __restrict gi = dy + i;
          T* __restrict di = dx + i;
          for (int64_t k = 0; k < n; ++k) {
            const T q = shifted_level<T, R>(xi[k], inv, z);
            di[k] = ((q >= lo) & (q <= hi)) ? gi[k] : T(0);
          }
        },
        [&](int64_t i, int64_t n, int64_t c0) {
          const T *inv = p.inv.data() + c0, *z = p.z.data() + c0;
          const T* __restrict xi = x + i;
          const T* __restrict gi = dy + i;
          T* __restrict di = dx + i;
          for (int64_t k = 0; k < n; ++k) {
            const T q = shifted_level<T, R>(xi[k], inv[k], z[k]);
            di[k] = ((q >= lo) & (q <= hi)) ? gi[k] : T(0);
          }
        });
  });
}

template <typename T>
Tensor fake_quantize_impl(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                          const QuantGrid& grid, Rounding rounding, SteMode ste) {
  static const char* op = "fake_quantize";
  const ChannelLayout l = detail::channel_layout(x.shape(), axis);
  auto p = std::make_shared<const ChannelParams<T>>(read_params<T>(scale, zero_point, op));
  const T lo = static_cast<T>(grid.qmin()), hi = static_cast<T>(grid.qmax());
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (rounding == Rounding::HalfEven) {
    fq_forward<T, Rounding::HalfEven>(xc.data<T>(), y.data<T>(), l, *p, lo, hi);
  } else {
    fq_forward<T, Rounding::HalfAway>(xc.data<T>(), y.data<T>(), l, *p, lo, hi);
  }
  if (!needs_grad({&x})) return y;
  if (ste == SteMode::Identity) {
    arith_detail::record_guarded(y, {x}, op, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
    return y;
  }
  SavedTensor saved(xc);
  arith_detail::record_guarded(y, {x}, op, [saved, p, l, lo, hi, rounding](const Tensor& g) -> std::vector<Tensor> {
    Tensor xs = saved.get(op);
    QSLIM_CHECK(g.dtype() == xs.dtype(), op, ": gradient dtype ", dtype_name(g.dtype()), " differs from input dtype ",
                dtype_name(xs.dtype()));
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype());
    if (rounding == Rounding::HalfEven) {
      fq_backward<T, Rounding::HalfEven>(xs.data<T>(), gc.data<T>(), dx.data<T>(), l, *p, lo, hi);
    } else {
      fq_backward<T, Rounding::HalfAway>(xs.data<T>(), gc.data<T>(), dx.data<T>(), l, *p, lo, hi);
    }
    return {dx};
  });
  return y;
}

template <typename T, typename Q, Rounding R>
void quantize_kernel(const T* x, Q* q, const ChannelLayout& l, const ChannelParams<T>& p, T lo, T hi) {
  parallel_for(l.numel(), kQuantGrain, [&](int64_t b, int64_t e) {
    const T qlo = lo, qhi = hi;
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t n, int64_t c) {
          const T inv = p.inv[c], z = p.z[c];
          const T* __restrict xi = x + i;
          Q* __restrict qi = q + i;
          for (int64_t k = 0; k < n; ++k)
            qi[k] = static_cast<Q>(clamp_level(shifted_level<T, R>(xi[k], inv, z), qlo, qhi));
        },
        [&](int64_t i, int64_t n, int64_t c0) {
          const T *inv = p.inv.data() + c0, *z = p.z.data() + c0;
          const T* __restrict xi = x + i;
          Q* __restrict qi = q + i;
          for (int64_t k = 0; k < n; ++k)
            qi[k] = static_cast<Q>(clamp_level(shifted_level<T, R>(xi[k], inv[k], z[k]), qlo, qhi));
        });
  });
}

template <typename T, typename Q>
void quantize_typed(const Tensor& xc, Tensor& q, const QuantParams& params, const ChannelLayout& l) {
  const ChannelParams<T> p = read_params<T>(params.scale, params.zero_point, "quantize");
  const T lo = static_cast<T>(params.grid.qmin()), hi = static_cast<T>(params.grid.qmax());
  if (params.rounding == Rounding::HalfEven) {
    quantize_kernel<T, Q, Rounding::HalfEven>(xc.data<T>(), q.data<Q>(), l, p, lo, hi);
  } else {
    quantize_kernel<T, Q, Rounding::HalfAway>(xc.data<T>(), q.data<Q>(), l, p, lo, hi);
  }
}

template <typename T>
int64_t count_nan(const Tensor& xc) {
  const T* x = xc.data<T>();
  int64_t bad = 0;
  for (int64_t i = 0, n = xc.numel(); i < n; ++i) bad += x[i] != x[i];
  return bad;
}

template <typename Q>
void dequantize_kernel(const Q* q, float* y, const ChannelLayout& l, const ChannelParams<float>& p) {
  parallel_for(l.numel(), kQuantGrain, [&](int64_t b, int64_t e) {
    for_each_run(
        l, b, e,
        [&](int64_t i, int64_t n, int64_t c) {
          const float s = p.s[c], z = p.z[c];
          for (int64_t k = 0; k < n; ++k) y[i + k] = (static_cast<float>(q[i + k]) - z) * s;
        },
        [&](int64_t i, int64_t n, int64_t c0) {
          for (int64_t k = 0; k < n; ++k) y[i + k] = (static_cast<float>(q[i + k]) - p.z[c0 + k]) * p.s[c0 + k];
        });
  });
}

}  // namespace

Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                     const QuantGrid& grid, Rounding rounding, SteMode ste) {
  QSLIM_CHECK(x.defined(), "fake_quantize: input is undefined");
  arith_detail::check_float(x, "fake_quantize");
  check_quant_args(scale, zero_point, axis, x.shape(), "fake_quantize");
  Tensor y;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "fake_quantize",
                       [&] { y = fake_quantize_impl<scalar_t>(x, scale, zero_point, axis, grid, rounding, ste); });
  return y;
}

Tensor fake_quantize(const Tensor& x, const QuantParams& params, SteMode ste) {
  return fake_quantize(x, params.scale, params.zero_point, params.axis, params.grid, params.rounding, ste);
}

Tensor quantize(const Tensor& x, const QuantParams& params) {
  QSLIM_CHECK(x.defined(), "quantize: input is undefined");
  arith_detail::check_float(x, "quantize");
  check_quant_args(params.scale, params.zero_point, params.axis, x.shape(), "quantize");
  Tensor xc = x.contiguous();
  int64_t nan = 0;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "quantize", [&] { nan = count_nan<scalar_t>(xc); });
  QSLIM_CHECK(nan == 0, "quantize: input ", shape_str(x.shape()), " contains ", nan,
              " NaN values, which have no integer code");
  const ChannelLayout l = detail::channel_layout(x.shape(), params.axis);
  Tensor q = Tensor::empty(x.shape(), params.grid.storage_dtype());
  QSLIM_DISPATCH_FLOAT(x.dtype(), "quantize", [&] {
    switch (q.dtype()) {
      case DType::I8:
        quantize_typed<scalar_t, int8_t>(xc, q, params, l);
        break;
      case DType::U8:
        quantize_typed<scalar_t, uint8_t>(xc, q, params, l);
        break;
      case DType::I16:
        quantize_typed<scalar_t, int16_t>(xc, q, params, l);
        break;
      default:
        quantize_typed<scalar_t, int32_t>(xc, q, params, l);
        break;
    }
  });
  return q;
}

Tensor dequantize(const Tensor& q, const QuantParams& params) {
  QSLIM_CHECK(q.defined(), "dequantize: input is undefined");
  QSLIM_CHECK(!q.is_floating_point(), "dequantize: expected an integer tensor, got ", dtype_name(q.dtype()), " ",
              shape_str(q.shape()));
  check_quant_args(params.scale, params.zero_point, params.axis, q.shape(), "dequantize");
  const ChannelLayout l = detail::channel_layout(q.shape(), params.axis);
  const ChannelParams<float> p = read_params<float>(params.scale, params.zero_point, "dequantize");
  Tensor qc = q.contiguous();
  Tensor y = Tensor::empty(q.shape(), DType::F32);
  switch (q.dtype()) {
    case DType::U8:
      dequantize_kernel(qc.data<uint8_t>(), y.data<float>(), l, p);
      break;
    case DType::I8:
      dequantize_kernel(qc.data<int8_t>(), y.data<float>(), l, p);
      break;
    case DType::I16:
      dequantize_kernel(qc.data<int16_t>(), y.data<float>(), l, p);
      break;
    case DType::I32:
      dequantize_kernel(qc.data<int32_t>(), y.data<float>(), l, p);
      break;
    case DType::I64:
      dequantize_kernel(qc.data<int64_t>(), y.data<float>(), l, p);
      break;
    default:
      QSLIM_FAIL("dequantize: unsupported dtype ", dtype_name(q.dtype()));
  }
  return y;
}

}  // namespace qslim::quant
