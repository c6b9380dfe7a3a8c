#include "core/cpu/activation_kernels.h"

// GCC 12 reports false "(maybe) used uninitialized" warnings inside Eigen's AVX-512 packet math.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>
#include <cmath>

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
      ys = T(0.5) * xs * (T(1) + (xs * T(kSqrtHalf)).erf());
      break;
    case Activation::GeluTanh:
      ys = T(0.5) * xs * (T(1) + (T(kGeluBeta) * (xs + T(kGeluKappa) * xs.cube())).tanh());
      break;
  }
}

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
      BlockArray<T> cdf = T(0.5) * (T(1) + (ss * T(kSqrtHalf)).erf());
      os = gs * (cdf + ss * T(kInvSqrt2Pi) * (T(-0.5) * ss.square()).exp());
      break;
    }
    case Activation::GeluTanh: {
      BlockArray<T> th = (T(kGeluBeta) * (ss + T(kGeluKappa) * ss.cube())).tanh();
      os = gs * (T(0.5) * (T(1) + th) +
                 T(0.5) * ss * (T(1) - th.square()) * T(kGeluBeta) * (T(1) + T(3 * kGeluKappa) * ss.square()));
      break;
    }
  }
}

template <typename T>
void backward_range(const T* g, const T* s, T* o, int64_t n, Activation act, T param) {
  for (int64_t b = 0; b < n; b += kBlock) backward_block(g + b, s + b, o + b, std::min(kBlock, n - b), act, param);
}

template <typename T>
void forward_parallel(const T* x, T* y, int64_t n, Activation act, double param) {
  const T p = static_cast<T>(param);
  parallel_for(n, grain_of(act), [&](int64_t b, int64_t e) { forward_range(x + b, y + b, e - b, act, p); });
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

Tensor activation_backward(const Tensor& grad_in, const Tensor& saved_in, Activation act, double param) {
  const char* name = activation_name(act);
  QSLIM_CHECK(grad_in.shape() == saved_in.shape(), name, " backward: gradient shape ", shape_str(grad_in.shape()),
              " does not match saved tensor shape ", shape_str(saved_in.shape()));
  QSLIM_CHECK(grad_in.dtype() == saved_in.dtype(), name, " backward: gradient dtype ", dtype_name(grad_in.dtype()),
              " does not match saved tensor dtype ", dtype_name(saved_in.dtype()));
  Tensor out;
  QSLIM_DISPATCH_FLOAT(grad_in.dtype(), name, [&] {
    using T = scalar_t;
    Tensor g = grad_in.contiguous(), s = saved_in.contiguous();
    out = Tensor::empty(g.shape(), g.dtype());
    const T* pg = g.data<T>();
    const T* ps = s.data<T>();
    T* po = out.data<T>();
    const T p = static_cast<T>(param);
    parallel_for(g.numel(), grain_of(act),
                 [&](int64_t b, int64_t e) { backward_range(pg + b, ps + b, po + b, e - b, act, p); });
  });
  return out;
}

}  // namespace qslim::cpu
