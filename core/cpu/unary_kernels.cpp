#include "core/cpu/unary_kernels.h"

// GCC 12 reports false "(maybe) used uninitialized" warnings inside Eigen's AVX-512 packet math.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/cpu/elementwise.h"

namespace qslim::cpu {

namespace {

// Transcendental loops cost far more per element than a copy, so they split into threads sooner.
constexpr int64_t kMathGrain = 1 << 12;

template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// out = f(x) over contiguous chunks: f(ConstArrayMap x, ArrayMap out) assigns an Eigen expression.
template <typename T, typename F>
Tensor eigen_map(const Tensor& x_in, F f) {
  Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const T* px = x.data<T>();
  T* po = out.data<T>();
  parallel_range(x.numel(), kMathGrain, [&](int64_t b, int64_t e) {
    ConstArrayMap<T> xs(px + b, e - b);
    ArrayMap<T> os(po + b, e - b);
    f(xs, os);
  });
  return out;
}

template <typename T>
T sign_of(T x) {
  return static_cast<T>((T(0) < x) - (x < T(0)));
}

}  // namespace

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Sign: return "sign";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Round: return "round";
  }
  return "unary";
}

Tensor unary(const Tensor& x, UnaryOp op) {
  const char* name = unary_op_name(op);
  Tensor out;
  switch (op) {
    case UnaryOp::Neg:
      QSLIM_DISPATCH_ALL(x.dtype(), name, [&] {
        out = unary_map<scalar_t>(x, [](scalar_t v) { return static_cast<scalar_t>(-v); });
      });
      break;
    case UnaryOp::Abs:
      QSLIM_DISPATCH_ALL(x.dtype(), name, [&] {
        out = unary_map<scalar_t>(x, [](scalar_t v) { return v < scalar_t(0) ? static_cast<scalar_t>(-v) : v; });
      });
      break;
    case UnaryOp::Sign:
      QSLIM_DISPATCH_ALL(x.dtype(), name, [&] { out = unary_map<scalar_t>(x, [](scalar_t v) { return sign_of(v); }); });
      break;
    case UnaryOp::Exp:
      QSLIM_DISPATCH_FLOAT(x.dtype(), name, [&] {
        out = eigen_map<scalar_t>(x, [](const auto& a, auto& o) { o = a.exp(); });
      });
      break;
    case UnaryOp::Log:
      QSLIM_DISPATCH_FLOAT(x.dtype(), name, [&] {
        out = eigen_map<scalar_t>(x, [](const auto& a, auto& o) { o = a.log(); });
      });
      break;
    case UnaryOp::Sqrt:
      QSLIM_DISPATCH_FLOAT(x.dtype(), name, [&] {
        out = eigen_map<scalar_t>(x, [](const auto& a, auto& o) { o = a.sqrt(); });
      });
      break;
    case UnaryOp::Round:
      // rint rounds half to even under the default rounding mode.
      QSLIM_DISPATCH_FLOAT(x.dtype(), name, [&] {
        out = eigen_map<scalar_t>(x, [](const auto& a, auto& o) { o = a.rint(); });
      });
      break;
  }
  return out;
}

Tensor pow_scalar(const Tensor& x, double exponent) {
  Tensor out;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "pow", [&] {
    using T = scalar_t;
    const T e = static_cast<T>(exponent);
    if (exponent == 1.0) {
      out = unary_map<T>(x, [](T v) { return v; });
    } else if (exponent == 2.0) {
      out = unary_map<T>(x, [](T v) { return v * v; });
    } else if (exponent == 3.0) {
      out = unary_map<T>(x, [](T v) { return v * v * v; });
    } else if (exponent == 0.5) {
      out = eigen_map<T>(x, [](const auto& a, auto& o) { o = a.sqrt(); });
    } else if (exponent == -1.0) {
      out = unary_map<T>(x, [](T v) { return T(1) / v; });
    } else {
      out = eigen_map<T>(x, [e](const auto& a, auto& o) { o = a.pow(e); });
    }
  });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  QSLIM_CHECK(!std::isnan(lo) && !std::isnan(hi), "clamp: bounds must not be NaN, got [", lo, ", ", hi, "]");
  QSLIM_CHECK(lo <= hi, "clamp: lower bound ", lo, " is greater than upper bound ", hi);
  Tensor out;
  QSLIM_DISPATCH_ALL(x.dtype(), "clamp", [&] {
    using T = scalar_t;
    if constexpr (std::is_floating_point_v<T>) {
      const T l = static_cast<T>(lo), h = static_cast<T>(hi);
      // Written so that NaN passes through, as in PyTorch.
      out = unary_map<T>(x, [l, h](T v) { return v < l ? l : (v > h ? h : v); });
    } else {
      const double tmin = static_cast<double>(std::numeric_limits<T>::min());
      const double tmax = static_cast<double>(std::numeric_limits<T>::max());
      const double l = std::clamp(std::ceil(lo), tmin, tmax), h = std::clamp(std::floor(hi), tmin, tmax);
      QSLIM_CHECK(l <= h, "clamp: no ", dtype_name(x.dtype()), " value lies in [", lo, ", ", hi, "]");
      const T li = static_cast<T>(l), hi_t = static_cast<T>(h);
      out = unary_map<T>(x, [li, hi_t](T v) { return v < li ? li : (v > hi_t ? hi_t : v); });
    }
  });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out;
  QSLIM_DISPATCH_ALL(a.dtype(), "maximum", [&] {
    using T = scalar_t;
    // x != x is true only for NaN: NaN wins either way.
    out = binary_map<T>(a, b, "maximum", [](T x, T y) { return (x > y || x != x) ? x : y; });
  });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out;
  QSLIM_DISPATCH_ALL(a.dtype(), "minimum", [&] {
    using T = scalar_t;
    out = binary_map<T>(a, b, "minimum", [](T x, T y) { return (x < y || x != x) ? x : y; });
  });
  return out;
}

}  // namespace qslim::cpu
