#include "core/cpu/activation_kernels.h"

// GCC 12 reports false "(maybe) used uninitialized" warnings inside Eigen's AVX-512 packet math.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cpu/elementwise.h"

namespace qslim::cpu {

namespace {

constexpr int64_t kMathGrain = 1 << 12;  // transcendental activations: threads pay off sooner
constexpr int64_t kBlock = 256;          // block for backward passes that need a temporary

template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using BlockArray = Eigen::Array<T, Eigen::Dynamic, 1, 0, kBlock, 1>;  // fixed capacity, on the stack

constexpr double kSqrtHalf = 0.70710678118654752440;     // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1/sqrt(2*pi)
constexpr double kGeluBeta = 0.79788456080286535588;     // sqrt(2/pi)
constexpr double kGeluKappa = 0.044715;

// 1 / (1 + exp(-x)) keeps full relative accuracy in the tails (Eigen's logistic() for float is a
// rational fit accurate only to ~1e-7 absolute, i.e. off by 1e-3 relative around x = -9).
template <typename Derived>
auto sigmoid_of(const Eigen::ArrayBase<Derived>& x) {
  using T = typename Derived::Scalar;
  return T(1) / (T(1) + (-x).exp());
}

// Standard normal CDF Phi(x) = erfc(-x/sqrt2)/2, which unlike (1 + erf(x/sqrt2))/2 does not cancel
// for negative x. f64 uses std::erfc; f32 uses the vectorisable erfc of Numerical Recipes (fractional
// error < 1.2e-7), giving GELU within 1.7e-7 absolute everywhere (Eigen's f32 erf is off by 700 ulp
// near x = -3 and overshoots -1 further out).
void normal_cdf(const double* x, double* cdf, int64_t n) {
  for (int64_t i = 0; i < n; ++i) cdf[i] = 0.5 * std::erfc(-x[i] * kSqrtHalf);
}

void normal_cdf(const float* x, float* cdf, int64_t n) {
  ConstArrayMap<float> xs(x, n);
  ArrayMap<float> out(cdf, n);
  BlockArray<float> a = (xs * float(kSqrtHalf)).abs();
  BlockArray<float> t = 1.f / (1.f + 0.5f * a);
  BlockArray<float> poly =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f +
                          t * (0.27886807f +
                               t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  BlockArray<float> half_erfc = 0.5f * t * (poly - a.square()).exp();  // erfc(|x|/sqrt2) / 2
  out = (xs < 0.f).select(half_erfc, 1.f - half_erfc);
}

bool is_transcendental(Activation act) {
  return act == Activation::Sigmoid || act == Activation::Tanh || act == Activation::Silu ||
         act == Activation::Gelu || act == Activation::GeluTanh;
}

int64_t grain_of(Activation act) { return is_transcendental(act) ? kMathGrain : kElementwiseGrain; }

template <typename T>
void forward_range(const T* x, T* y, int64_t n, Activation act, T param) {
  ConstArrayMap<T> xs(x, n);
  ArrayMap<T> ys(y, n);
  switch (act) {
    case Activation::Relu:
      // Comparison form keeps NaN (as PyTorch does) and vectorises to a compare + blend.
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
      break;
    case Activation::Relu6:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : (x[i] > T(6) ? T(6) : x[i]);
      break;
    case Activation::LeakyRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : x[i] * param;
      break;
    case Activation::Hardsigmoid:
      for (int64_t i = 0; i < n; ++i) {
        T r = x[i] + T(3);
        r = r < T(0) ? T(0) : (r > T(6) ? T(6) : r);
        y[i] = r / T(6);
      }
      break;
    case Activation::Hardswish:
      for (int64_t i = 0; i < n; ++i) {
        T r = x[i] + T(3);
        r = r < T(0) ? T(0) : (r > T(6) ? T(6) : r);
        y[i] = x[i] * r / T(6);
      }
      break;
    case Activation::Sigmoid:
      ys = sigmoid_of(xs);
      break;
    case Activation::Tanh:
      ys = xs.tanh();
      break;
    case Activation::Silu:
      ys = xs * sigmoid_of(xs);
      break;
    case Activation::Gelu:
      for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t m = std::min(kBlock, n - b);
        T cdf[kBlock];
        normal_cdf(x + b, cdf, m);
        for (int64_t i = 0; i < m; ++i) y[b + i] = x[b + i] * cdf[i];
      }
      break;
    case Activation::GeluTanh:
      // (1 + tanh(u)) / 2 == sigmoid(2u), which does not cancel for negative u.
      ys = xs * sigmoid_of(T(2 * kGeluBeta) * (xs + T(kGeluKappa) * xs.cube()));
      break;
  }
}

// n <= kBlock for Silu, Gelu and GeluTanh (their temporaries live on the stack).
template <typename T>
void backward_block(const T* g, const T* s, T* o, int64_t n, Activation act, T param) {
  ConstArrayMap<T> gs(g, n), ss(s, n);
  ArrayMap<T> os(o, n);
  switch (act) {
    case Activation::Relu:  // s = y
      for (int64_t i = 0; i < n; ++i) o[i] = s[i] > T(0) ? g[i] : T(0);
      break;
    case Activation::Relu6:  // s = x; PyTorch's hardtanh: gradient only strictly inside (0, 6)
      for (int64_t i = 0; i < n; ++i) o[i] = (s[i] > T(0) && s[i] < T(6)) ? g[i] : T(0);
      break;
    case Activation::LeakyRelu:
      for (int64_t i = 0; i < n; ++i) o[i] = s[i] > T(0) ? g[i] : g[i] * param;
      break;
    case Activation::Hardsigmoid:
      for (int64_t i = 0; i < n; ++i) o[i] = (s[i] > T(-3) && s[i] < T(3)) ? g[i] / T(6) : T(0);
      break;
    case Activation::Hardswish:
      for (int64_t i = 0; i < n; ++i)
        o[i] = s[i] < T(-3) ? T(0) : (s[i] <= T(3) ? g[i] * (s[i] / T(3) + T(0.5)) : g[i]);
      break;
    case Activation::Sigmoid:  // s = y
      os = gs * ss * (T(1) - ss);
      break;
    case Activation::Tanh:  // s = y
      os = gs * (T(1) - ss.square());
      break;
    case Activation::Silu: {
      BlockArray<T> sig = sigmoid_of(ss);
      os = gs * sig * (T(1) + ss * (T(1) - sig));
      break;
    }
    case Activation::Gelu: {
      BlockArray<T> cdf(n);
      normal_cdf(s, cdf.data(), n);
      os = gs * (cdf + ss * T(kInvSqrt2Pi) * (T(-0.5) * ss.square()).exp());
      break;
    }
    case Activation::GeluTanh: {
      // With s = sigmoid(2u) = (1 + tanh u)/2: d/dx = s + x/2 * (1 - tanh^2 u) * u' and 1 - tanh^2 u = 4s(1-s).
      BlockArray<T> sg = sigmoid_of(T(2 * kGeluBeta) * (ss + T(kGeluKappa) * ss.cube()));
      os = gs * (sg + T(2 * kGeluBeta) * ss * sg * (T(1) - sg) * (T(1) + T(3 * kGeluKappa) * ss.square()));
      break;
    }
  }
}

template <typename T>
void backward_range(const T* g, const T* s, T* o, int64_t n, Activation act, T param) {
  // Only the activations that need a BlockArray temporary are cut into blocks.
  const bool blocked = act == Activation::Silu || act == Activation::Gelu || act == Activation::GeluTanh;
  if (!blocked) return backward_block(g, s, o, n, act, param);
  for (int64_t b = 0; b < n; b += kBlock) backward_block(g + b, s + b, o + b, std::min(kBlock, n - b), act, param);
}

// ReLU is on the training hot path and purely memory-bound. Outputs too large to stay in the last
// level cache are written with non-temporal stores, which skip the read-for-ownership of the
// destination: measured 1.5-1.7x faster from 16 MB up, slower below ~10 MB (where plain stores hit cache).
constexpr int64_t kStreamingBytes = int64_t(16) << 20;

bool use_streaming_relu(int64_t n, size_t elem) { return n * static_cast<int64_t>(elem) >= kStreamingBytes; }

#ifdef __AVX512F__
// Scalar steps until y is 64-byte aligned, then 16 lanes per streaming store.
template <typename F16, typename F1>
void streaming_loop(float* y, int64_t n, F16 vec, F1 scalar) {
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(y + i) & 63) != 0; ++i) scalar(i);
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(y + i, vec(i));
  for (; i < n; ++i) scalar(i);
  _mm_sfence();
}

void relu_streaming(const float* x, float* y, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  // max(0, x) returns its second operand for NaN, so NaN passes through like the scalar form.
  streaming_loop(
      y, n, [&](int64_t i) { return _mm512_max_ps(zero, _mm512_loadu_ps(x + i)); },
      [&](int64_t i) { y[i] = x[i] < 0.f ? 0.f : x[i]; });
}

void relu_backward_streaming(const float* g, const float* out, float* o, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  streaming_loop(
      o, n,
      [&](int64_t i) {
        __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(out + i), zero, _CMP_GT_OQ);
        return _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(g + i));
      },
      [&](int64_t i) { o[i] = out[i] > 0.f ? g[i] : 0.f; });
}
#endif

template <typename T>
void forward_parallel(const T* x, T* y, int64_t n, Activation act, double param) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (act == Activation::Relu && x != y && use_streaming_relu(n, sizeof(T))) {
      parallel_range(n, kElementwiseGrain, [&](int64_t b, int64_t e) { relu_streaming(x + b, y + b, e - b); });
      return;
    }
  }
#endif
  const T p = static_cast<T>(param);
  parallel_range(n, grain_of(act), [&](int64_t b, int64_t e) { forward_range(x + b, y + b, e - b, act, p); });
}

template <typename T>
void backward_parallel(const T* g, const T* s, T* o, int64_t n, Activation act, double param) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (act == Activation::Relu && o != g && use_streaming_relu(n, sizeof(T))) {
      parallel_range(n, kElementwiseGrain,
                   [&](int64_t b, int64_t e) { relu_backward_streaming(g + b, s + b, o + b, e - b); });
      return;
    }
  }
#endif
  const T p = static_cast<T>(param);
  parallel_range(n, grain_of(act), [&](int64_t b, int64_t e) { backward_range(g + b, s + b, o + b, e - b, act, p); });
}

}  // namespace

const char* activation_name(Activation act) {
  switch (act) {
    case Activation::Relu: return "relu";
    case Activation::Relu6: return "relu6";
    case Activation::LeakyRelu: return "leaky_relu";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Tanh: return "tanh";
    case Activation::Hardswish: return "hardswish";
    case Activation::Hardsigmoid: return "hardsigmoid";
    case Activation::Silu: return "silu";
    case Activation::Gelu: return "gelu";
    case Activation::GeluTanh: return "gelu_tanh";
  }
  return "activation";
}

bool activation_backward_uses_output(Activation act) {
  return act == Activation::Relu || act == Activation::Sigmoid || act == Activation::Tanh;
}

Tensor activation_forward(const Tensor& x_in, Activation act, double param) {
  Tensor out;
  QSLIM_DISPATCH_FLOAT(x_in.dtype(), activation_name(act), [&] {
    Tensor x = x_in.contiguous();
    out = Tensor::empty(x.shape(), x.dtype());
    forward_parallel(x.data<scalar_t>(), out.data<scalar_t>(), x.numel(), act, param);
  });
  return out;
}

void activation_forward_inplace(const Tensor& x, Activation act, double param) {
  QSLIM_DISPATCH_FLOAT(x.dtype(), activation_name(act), [&] {
    if (x.is_contiguous()) {
      scalar_t* p = x.data<scalar_t>();
      forward_parallel(p, p, x.numel(), act, param);
      x.bump_version();
    } else {
      Tensor alias = x;
      alias.copy_(activation_forward(x, act, param));
    }
  });
}

void activation_apply(const float* x, float* y, int64_t n, Activation act, double param) {
  forward_range(x, y, n, act, static_cast<float>(param));
}

void activation_apply(const double* x, double* y, int64_t n, Activation act, double param) {
  forward_range(x, y, n, act, param);
}

namespace {
void check_backward_operands(const Tensor& grad, const Tensor& saved, const char* name) {
  QSLIM_CHECK(grad.shape() == saved.shape(), name, " backward: gradient shape ", shape_str(grad.shape()),
              " does not match saved tensor shape ", shape_str(saved.shape()));
  QSLIM_CHECK(grad.dtype() == saved.dtype(), name, " backward: gradient dtype ", dtype_name(grad.dtype()),
              " does not match saved tensor dtype ", dtype_name(saved.dtype()));
}
}  // namespace

Tensor activation_backward(const Tensor& grad_in, const Tensor& saved_in, Activation act, double param) {
  const char* name = activation_name(act);
  check_backward_operands(grad_in, saved_in, name);
  Tensor out;
  QSLIM_DISPATCH_FLOAT(grad_in.dtype(), name, [&] {
    using T = scalar_t;
    Tensor g = grad_in.contiguous(), s = saved_in.contiguous();
    out = Tensor::empty(g.shape(), g.dtype());
    backward_parallel(g.data<T>(), s.data<T>(), out.data<T>(), g.numel(), act, param);
  });
  return out;
}

void activation_backward_inplace(const Tensor& grad, const Tensor& saved_in, Activation act, double param) {
  const char* name = activation_name(act);
  check_backward_operands(grad, saved_in, name);
  QSLIM_CHECK(grad.is_contiguous(), name, " backward: in-place gradient of shape ", shape_str(grad.shape()),
              " must be contiguous");
  QSLIM_DISPATCH_FLOAT(grad.dtype(), name, [&] {
    using T = scalar_t;
    Tensor s = saved_in.contiguous();
    T* g = grad.data<T>();
    backward_parallel(g, s.data<T>(), g, grad.numel(), act, param);
  });
  grad.bump_version();
}

}  // namespace qslim::cpu
