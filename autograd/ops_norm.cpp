// Batch normalisation (fused per-channel passes over NC* layouts), dropout and embedding.
#include "autograd/ops_norm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "autograd/grad_buffer.h"
#include "autograd/node.h"
#include "core/factory.h"
#include "core/kernels.h"
#include "core/cpu/simd.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim {

namespace {

constexpr int64_t kNormGrain = 1 << 15;  // elements per thread before channel loops go parallel

// x viewed as [N, C, S]. Channel c is N rows of S contiguous elements; with S == 1 it is one
// row of N elements at stride C, which keeps [N, C] inputs on the same code path.
struct ChannelGeom {
  int64_t N, C, S;
  int64_t rows() const { return S == 1 ? 1 : N; }
  int64_t row_len() const { return S == 1 ? N : S; }
  int64_t stride() const { return S == 1 ? C : 1; }
  int64_t row_offset(int64_t c, int64_t n) const { return S == 1 ? c : (n * C + c) * S; }
  int64_t count() const { return N * S; }
};

ChannelGeom geom_of(const Tensor& x) {
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.size(d);
  return {x.size(0), x.size(1), S};
}

void for_channels(const ChannelGeom& g, const std::function<void(int64_t, int64_t)>& fn) {
  int64_t grain = std::max<int64_t>(1, kNormGrain / std::max<int64_t>(1, g.count()));
  cpu::parallel_range(g.C, grain, fn);
}

// Sums of (p[i*stride] - k) and of its square. Shifting by a sample k of the channel keeps the
// one-pass variance E[(x-k)^2] - E[x-k]^2 accurate (no cancellation when |mean| >> std).
template <typename T>
void row_shifted_sums(const T* p, int64_t n, int64_t stride, double k, double& s1, double& s2) {
  double a = 0, b = 0;
  if (stride == 1) {
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; ++i) {
      double d = static_cast<double>(p[i]) - k;
      a += d;
      b += d * d;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      double d = static_cast<double>(p[i * stride]) - k;
      a += d;
      b += d * d;
    }
  }
  s1 += a;
  s2 += b;
}

// Sums of gy and gy * (x - m) along one strided row.
template <typename T>
void row_grad_sums(const T* gy, const T* x, int64_t n, int64_t stride, double m, double& sg, double& sgx) {
  double a = 0, b = 0;
  if (stride == 1) {
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; ++i) {
      double g = static_cast<double>(gy[i]);
      a += g;
      b += g * (static_cast<double>(x[i]) - m);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      double g = static_cast<double>(gy[i * stride]);
      a += g;
      b += g * (static_cast<double>(x[i * stride]) - m);
    }
  }
  sg += a;
  sgx += b;
}

// f32 fast paths of the two sums above: float vector partial sums over blocks of a row (short
// enough that float accumulation loses nothing measurable), combined in double.
constexpr int64_t kSumBlock = 1024;
using VF = cpu::Vec<float>::type;
constexpr int64_t kLanes = cpu::Vec<float>::lanes;

void row_shifted_sums(const float* p, int64_t n, int64_t stride, double k, double& s1, double& s2) {
  if (stride != 1) return row_shifted_sums<float>(p, n, stride, k, s1, s2);
  const float kf = static_cast<float>(k);
  const VF kv = cpu::vsplat(kf);
  for (int64_t b = 0; b < n; b += kSumBlock) {
    const int64_t e = std::min(n, b + kSumBlock);
    VF a0{}, a1{}, q0{}, q1{};
    int64_t i = b;
    for (; i + 2 * kLanes <= e; i += 2 * kLanes) {
      const VF d0 = cpu::vload(p + i) - kv, d1 = cpu::vload(p + i + kLanes) - kv;
      a0 += d0;
      a1 += d1;
      q0 += d0 * d0;
      q1 += d1 * d1;
    }
    for (; i + kLanes <= e; i += kLanes) {
      const VF d = cpu::vload(p + i) - kv;
      a0 += d;
      q0 += d * d;
    }
    float ta = 0, tq = 0;
    for (; i < e; ++i) {
      const float d = p[i] - kf;
      ta += d;
      tq += d * d;
    }
    s1 += static_cast<double>(cpu::vsum<float>(a0 + a1)) + ta;
    s2 += static_cast<double>(cpu::vsum<float>(q0 + q1)) + tq;
  }
}

void row_grad_sums(const float* gy, const float* x, int64_t n, int64_t stride, double m, double& sg, double& sgx) {
  if (stride != 1) return row_grad_sums<float>(gy, x, n, stride, m, sg, sgx);
  const float mf = static_cast<float>(m);
  const VF mv = cpu::vsplat(mf);
  for (int64_t b = 0; b < n; b += kSumBlock) {
    const int64_t e = std::min(n, b + kSumBlock);
    VF a0{}, a1{}, q0{}, q1{};
    int64_t i = b;
    for (; i + 2 * kLanes <= e; i += 2 * kLanes) {
      const VF g0 = cpu::vload(gy + i), g1 = cpu::vload(gy + i + kLanes);
      a0 += g0;
      a1 += g1;
      q0 += g0 * (cpu::vload(x + i) - mv);
      q1 += g1 * (cpu::vload(x + i + kLanes) - mv);
    }
    for (; i + kLanes <= e; i += kLanes) {
      const VF g = cpu::vload(gy + i);
      a0 += g;
      q0 += g * (cpu::vload(x + i) - mv);
    }
    float ta = 0, tq = 0;
    for (; i < e; ++i) {
      ta += gy[i];
      tq += gy[i] * (x[i] - mf);
    }
    sg += static_cast<double>(cpu::vsum<float>(a0 + a1)) + ta;
    sgx += static_cast<double>(cpu::vsum<float>(q0 + q1)) + tq;
  }
}

// out[i] = a * x[i] + b (optionally + c * y[i]) along one strided row.
template <typename T>
void row_affine(const T* x, T* out, int64_t n, int64_t stride, T a, T b) {
  if (stride == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = a * x[i] + b;
  } else {
    for (int64_t i = 0; i < n; ++i) out[i * stride] = a * x[i * stride] + b;
  }
}

template <typename T>
void row_affine2(const T* gy, const T* x, T* out, int64_t n, int64_t stride, T a, T b, T c) {
  if (stride == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = a * gy[i] + b * x[i] + c;
  } else {
    for (int64_t i = 0; i < n; ++i) out[i * stride] = a * gy[i * stride] + b * x[i * stride] + c;
  }
}

// ---- fused activation (batch_norm_act): y = act(a*x + b); gradients pass where act' = 1.

template <BnActivation A, typename T>
inline T activate(T v) {
  if constexpr (A == BnActivation::Relu) return v < T(0) ? T(0) : v;  // keeps NaN, like relu()
  if constexpr (A == BnActivation::Relu6) return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
  return v;
}

// From the activation's output: ReLU passes gradient where y > 0, ReLU6 where 0 < y < 6 (as
// relu() and relu6() do).
template <BnActivation A, typename T>
inline bool passes(T y) {
  if constexpr (A == BnActivation::Relu) return y > T(0);
  if constexpr (A == BnActivation::Relu6) return y > T(0) && y < T(6);
  return true;
}

template <BnActivation A, typename T>
void row_affine_act(const T* x, T* out, int64_t n, int64_t stride, T a, T b) {
  if (stride == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = activate<A>(a * x[i] + b);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i * stride] = activate<A>(a * x[i * stride] + b);
  }
}

// Sums of g and g * (x - m) along one row, g = gy where the activation passes it (y its output);
// float partial sums per block for f32 (as row_grad_sums), double for f64.
template <BnActivation A, typename T>
void row_grad_sums_act(const T* gy, const T* y, const T* x, int64_t n, int64_t stride, double m, double& sg,
                       double& sgx) {
  using Acc = std::conditional_t<std::is_same_v<T, float>, float, double>;
  const Acc mm = static_cast<Acc>(m);
  if (stride != 1) {
    for (int64_t i = 0; i < n; ++i) {
      const double g = passes<A>(y[i * stride]) ? static_cast<double>(gy[i * stride]) : 0.0;
      sg += g;
      sgx += g * (static_cast<double>(x[i * stride]) - m);
    }
    return;
  }
  for (int64_t b = 0; b < n; b += kSumBlock) {
    const int64_t e = std::min(n, b + kSumBlock);
    Acc s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t i = b; i < e; ++i) {
      const Acc g = passes<A>(y[i]) ? static_cast<Acc>(gy[i]) : Acc(0);
      s1 += g;
      s2 += g * (static_cast<Acc>(x[i]) - mm);
    }
    sg += s1;
    sgx += s2;
  }
}

// out = a * g + b * x + c along one row, g as above (out may be gy).
template <BnActivation A, typename T>
void row_affine2_act(const T* gy, const T* y, const T* x, T* out, int64_t n, int64_t stride, T a, T b, T c) {
  if (stride != 1) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = passes<A>(y[i * stride]) ? gy[i * stride] : T(0);
      out[i * stride] = a * g + b * x[i * stride] + c;
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T g = passes<A>(y[i]) ? gy[i] : T(0);
    out[i] = a * g + b * x[i] + c;
  }
}

std::vector<double> channel_values(const Tensor& t, int64_t C, const char* what) {
  QSLIM_CHECK(t.is_floating_point(), "batch_norm: ", what, " must be floating, got ", dtype_name(t.dtype()));
  QSLIM_CHECK(t.dim() == 1 && t.numel() == C, "batch_norm: ", what, " has shape ", shape_str(t.shape()),
              " but the input has ", C, " channels (expected [", C, "])");
  return t.to_vector<double>();
}

// Channels [cb, ce) are visited image by image (rows in memory order) rather than channel by
// channel: the channel-major order jumps C*S elements per row, which defeats the prefetchers.
template <typename T, BnActivation A>
void bn_forward(const Tensor& x, Tensor& y, const ChannelGeom& g, bool batch_stats, std::vector<double>& mean,
                std::vector<double>& var, const std::vector<double>& w, const std::vector<double>& b, double eps,
                std::vector<double>& invstd) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const double M = static_cast<double>(g.count());
  for_channels(g, [&](int64_t cb, int64_t ce) {
    const int64_t nc = ce - cb;
    if (batch_stats) {
      std::vector<double> k(nc), s1(nc, 0.0), s2(nc, 0.0);
      for (int64_t c = cb; c < ce; ++c) k[c - cb] = static_cast<double>(px[g.row_offset(c, 0)]);
      for (int64_t r = 0; r < g.rows(); ++r)
        for (int64_t c = cb; c < ce; ++c)
          row_shifted_sums(px + g.row_offset(c, r), g.row_len(), g.stride(), k[c - cb], s1[c - cb], s2[c - cb]);
      for (int64_t c = cb; c < ce; ++c) {
        const double d = s1[c - cb] / M;
        mean[c] = k[c - cb] + d;
        var[c] = std::max(0.0, s2[c - cb] / M - d * d);
      }
    }
    std::vector<T> scale(nc), shift(nc);
    for (int64_t c = cb; c < ce; ++c) {
      invstd[c] = 1.0 / std::sqrt(var[c] + eps);
      const double sc = invstd[c] * (w.empty() ? 1.0 : w[c]);
      scale[c - cb] = static_cast<T>(sc);
      shift[c - cb] = static_cast<T>((b.empty() ? 0.0 : b[c]) - mean[c] * sc);
    }
    for (int64_t r = 0; r < g.rows(); ++r)
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t off = g.row_offset(c, r);
        if constexpr (A == BnActivation::None)
          row_affine(px + off, py + off, g.row_len(), g.stride(), scale[c - cb], shift[c - cb]);
        else
          row_affine_act<A>(px + off, py + off, g.row_len(), g.stride(), scale[c - cb], shift[c - cb]);
      }
  });
}

// Gradients of batch_norm. With batch statistics, dx = a*gy + k*x + k0 where the k terms carry
// the dependence of mean and variance on x; with fixed statistics, dx = a*gy.
// y: the output of the fused activation (undefined for BnActivation::None).
template <typename T, BnActivation A>
void bn_backward(const Tensor& gy, const Tensor& x, const Tensor& y, const ChannelGeom& g, bool batch_stats,
                 const std::vector<double>& mean, const std::vector<double>& invstd, const std::vector<double>& w,
                 Tensor* dx, std::vector<double>& sum_g, std::vector<double>& sum_gxhat) {
  const T* pg = gy.data<T>();
  const T* px = x.data<T>();
  const T* py = A == BnActivation::None ? nullptr : y.data<T>();
  T* pdx = dx ? dx->data<T>() : nullptr;
  const double M = static_cast<double>(g.count());
  for_channels(g, [&](int64_t cb, int64_t ce) {
    const int64_t nc = ce - cb;
    std::vector<double> sg(nc, 0.0), sgx(nc, 0.0);
    for (int64_t r = 0; r < g.rows(); ++r)
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t off = g.row_offset(c, r);
        if constexpr (A == BnActivation::None)
          row_grad_sums(pg + off, px + off, g.row_len(), g.stride(), mean[c], sg[c - cb], sgx[c - cb]);
        else
          row_grad_sums_act<A>(pg + off, py + off, px + off, g.row_len(), g.stride(), mean[c], sg[c - cb],
                               sgx[c - cb]);
      }
    std::vector<T> ca(nc), ck(nc), ck0(nc);
    for (int64_t c = cb; c < ce; ++c) {
      sum_g[c] = sg[c - cb];
      sum_gxhat[c] = sgx[c - cb] * invstd[c];
      const double a = invstd[c] * (w.empty() ? 1.0 : w[c]);
      double k = 0, k0 = 0;
      if (batch_stats) {
        k = -a * invstd[c] * invstd[c] * sgx[c - cb] / M;
        k0 = -a * sg[c - cb] / M - k * mean[c];
      }
      ca[c - cb] = static_cast<T>(a);
      ck[c - cb] = static_cast<T>(k);
      ck0[c - cb] = static_cast<T>(k0);
    }
    if (!pdx) return;
    for (int64_t r = 0; r < g.rows(); ++r)
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t off = g.row_offset(c, r);
        if constexpr (A == BnActivation::None)
          row_affine2(pg + off, px + off, pdx + off, g.row_len(), g.stride(), ca[c - cb], ck[c - cb], ck0[c - cb]);
        else
          row_affine2_act<A>(pg + off, py + off, px + off, pdx + off, g.row_len(), g.stride(), ca[c - cb],
                             ck[c - cb], ck0[c - cb]);
      }
  });
}

template <typename T>
void add_row(T* dst, const T* src, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
}

Tensor channel_tensor(const std::vector<double>& v, DType dtype) {
  return from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dtype);
}

}  // namespace

namespace {

// Calls f.template operator()<A>() for the runtime activation.
template <typename F>
void with_activation(BnActivation act, F&& f) {
  switch (act) {
    case BnActivation::None: return f.template operator()<BnActivation::None>();
    case BnActivation::Relu: return f.template operator()<BnActivation::Relu>();
    case BnActivation::Relu6: return f.template operator()<BnActivation::Relu6>();
  }
  QSLIM_FAIL("batch_norm: unknown activation ", static_cast<int>(act));
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  return batch_norm_act(x, running_mean, running_var, weight, bias, training, BnActivation::None, momentum, eps);
}

Tensor batch_norm_act(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                      const Tensor& bias, bool training, BnActivation act, double momentum, double eps) {
  QSLIM_CHECK(x_in.dim() >= 2, "batch_norm: input must be [N, C] or [N, C, *], got ", shape_str(x_in.shape()));
  QSLIM_CHECK(x_in.is_floating_point(), "batch_norm: input must be floating, got ", dtype_name(x_in.dtype()));
  QSLIM_CHECK(running_mean.defined() == running_var.defined(),
              "batch_norm: running_mean and running_var must be given together");
  QSLIM_CHECK(eps > 0, "batch_norm: eps must be positive, got ", eps);
  const ChannelGeom g = geom_of(x_in);
  const int64_t C = g.C;
  std::vector<double> w, b, mean(C, 0.0), var(C, 0.0), invstd(C, 0.0);
  if (weight.defined()) w = channel_values(weight, C, "weight");
  if (bias.defined()) b = channel_values(bias, C, "bias");
  for (const Tensor* t : {&weight, &bias})
    if (t->defined())
      QSLIM_CHECK(t->dtype() == x_in.dtype(), "batch_norm: input is ", dtype_name(x_in.dtype()), " but a parameter is ",
                  dtype_name(t->dtype()));
  const bool batch_stats = training || !running_mean.defined();
  std::vector<double> rm, rv;
  if (running_mean.defined()) {
    rm = channel_values(running_mean, C, "running_mean");
    rv = channel_values(running_var, C, "running_var");
    if (!batch_stats) {
      mean = rm;
      var = rv;
    }
  }
  QSLIM_CHECK(!training || g.count() > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
              shape_str(x_in.shape()));

  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (g.count() > 0 || !batch_stats) {
    QSLIM_DISPATCH_FLOAT(x.dtype(), "batch_norm", [&] {
      with_activation(act, [&]<BnActivation A>() {
        bn_forward<scalar_t, A>(x, y, g, batch_stats, mean, var, w, b, eps, invstd);
      });
    });
  }

  if (training && running_mean.defined()) {
    // PyTorch: running = (1 - momentum) * running + momentum * batch, with the unbiased variance.
    const double M = static_cast<double>(g.count());
    for (int64_t c = 0; c < C; ++c) {
      rm[c] = (1.0 - momentum) * rm[c] + momentum * mean[c];
      rv[c] = (1.0 - momentum) * rv[c] + momentum * var[c] * M / (M - 1.0);
    }
    Tensor rm_out = running_mean, rv_out = running_var;  // handles to the caller's buffers
    rm_out.copy_(channel_tensor(rm, running_mean.dtype()));
    rv_out.copy_(channel_tensor(rv, running_var.dtype()));
  }

  if (needs_grad({&x_in, &weight, &bias})) {
    SavedTensor sx(x), sw(weight), sy(act == BnActivation::None ? Tensor() : y);
    const bool has_w = weight.defined(), has_b = bias.defined(), want_dx = x_in.requires_grad();
    const DType wdt = has_w ? weight.dtype() : x.dtype();
    record(y, {x_in, weight, bias}, act == BnActivation::None ? "batch_norm" : "batch_norm_act",
           [sx, sw, sy, act, g, batch_stats, mean, invstd, has_w, has_b, want_dx,
            wdt](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
             Tensor xs = sx.get("batch_norm"), ys = sy.get("batch_norm");
             std::vector<double> wv;
             if (has_w) wv = sw.get("batch_norm").to_vector<double>();
             // dx overwrites the incoming gradient when nobody else holds it (each channel's sums
             // are taken before its dx is written).
             const bool reuse = want_dx && exclusively_owned(grads[0]) && grads[0].dtype() == xs.dtype();
             Tensor gy = grads[0].contiguous();
             Tensor dx = reuse ? gy : want_dx ? Tensor::empty(xs.shape(), xs.dtype()) : Tensor();
             std::vector<double> sum_g(g.C, 0.0), sum_gxhat(g.C, 0.0);
             QSLIM_DISPATCH_FLOAT(xs.dtype(), "batch_norm backward", [&] {
               with_activation(act, [&]<BnActivation A>() {
                 bn_backward<scalar_t, A>(gy, xs, ys, g, batch_stats, mean, invstd, wv, want_dx ? &dx : nullptr,
                                          sum_g, sum_gxhat);
               });
             });
             return {dx, has_w ? channel_tensor(sum_gxhat, wdt) : Tensor(), has_b ? channel_tensor(sum_g, wdt) : Tensor()};
           });
  }
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  QSLIM_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  QSLIM_CHECK(x.is_floating_point(), "dropout: input must be floating, got ", dtype_name(x.dtype()));
  Generator& rng = gen ? *gen : global_generator();
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  // An element is kept when its 32-bit uniform draw is >= p * 2^32; one 64-bit draw serves two elements.
  const double thr_d = p * 4294967296.0;
  const uint64_t thr = thr_d >= 4294967296.0 ? (uint64_t{1} << 32) : static_cast<uint64_t>(thr_d);
  const double keep_scale = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
  QSLIM_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    scalar_t* m = mask.data<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(keep_scale);
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      uint64_t r = rng.next_u64();
      m[i] = (r & 0xffffffffu) >= thr ? s : scalar_t(0);
      m[i + 1] = (r >> 32) >= thr ? s : scalar_t(0);
    }
    if (i < n) m[i] = (rng.next_u64() & 0xffffffffu) >= thr ? s : scalar_t(0);
  });
  Tensor y = kernels::mul(x.contiguous(), mask);
  if (needs_grad({&x})) {
    record(y, {x}, "dropout", [mask](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      return {kernels::mul(grads[0].contiguous(), mask)};
    });
  }
  return y;
}

Tensor embedding(const Tensor& weight_in, const Tensor& indices_in, int64_t padding_idx) {
  QSLIM_CHECK(weight_in.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ",
              shape_str(weight_in.shape()));
  QSLIM_CHECK(indices_in.dtype() == DType::I64 || indices_in.dtype() == DType::I32,
              "embedding: indices must be i64 (or i32), got ", dtype_name(indices_in.dtype()));
  const int64_t num = weight_in.size(0), dim = weight_in.size(1);
  QSLIM_CHECK(padding_idx < num, "embedding: padding_idx ", padding_idx, " out of range for a table of ", num,
              " rows");
  Tensor idx = indices_in.to(DType::I64).contiguous();
  const int64_t* pi = idx.data<int64_t>();
  const int64_t k = idx.numel();
  for (int64_t i = 0; i < k; ++i)
    QSLIM_CHECK(pi[i] >= 0 && pi[i] < num, "embedding: index ", pi[i], " at position ", i,
                " out of range for a table of ", num, " rows (weight ", shape_str(weight_in.shape()), ")");
  Tensor weight = weight_in.contiguous();
  Shape out_shape = idx.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype());
  const size_t row_bytes = dim * dtype_size(weight.dtype());
  const char* src = static_cast<const char*>(weight.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  cpu::parallel_range(k, std::max<int64_t>(1, kNormGrain / std::max<int64_t>(1, dim)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + i * row_bytes, src + pi[i] * row_bytes, row_bytes);
  });
  if (needs_grad({&weight_in})) {
    Shape wshape = weight.shape();
    record(out, {weight_in}, "embedding",
           [idx, wshape, padding_idx](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
             Tensor gy = grads[0].contiguous();
             Tensor gw = zeros(wshape, gy.dtype());
             const int64_t* ix = idx.data<int64_t>();
             const int64_t d = wshape[1];
             QSLIM_DISPATCH_FLOAT(gy.dtype(), "embedding backward", [&] {
               const scalar_t* g = gy.data<scalar_t>();
               scalar_t* w = gw.data<scalar_t>();
               for (int64_t i = 0; i < idx.numel(); ++i)
                 if (ix[i] != padding_idx) add_row(w + ix[i] * d, g + i * d, d);
             });
             return {gw};
           });
  }
  return out;
}

}  // namespace qslim
