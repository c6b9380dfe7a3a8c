#include "core/cpu/softmax.h"

// GCC 12 reports false "may be used uninitialized" inside Eigen's AVX-512 exp (_mm512_undefined_*).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kTileElems = 2048;  // a row tile and its exp scratch stay in L1
constexpr int64_t kGrain = 1 << 14;   // elements per thread before a loop is split
constexpr int64_t kColTile = 256;     // column tile width for inner > 1

// Eigen's packet exp: vectorised (AVX-512/AVX2) and accurate to a few ulp, unlike a scalar std::exp loop.
template <typename T>
void exp_to(const T* src, T* dst, int64_t n) {
  Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> a(src, n);
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> b(dst, n);
  b = a.exp();
}

// Row reductions: SIMD for long rows. Short rows (e.g. 10 classes) use four independent scalar
// accumulators instead: a vector reduction's masked tail and horizontal steps, or one serial
// dependency chain, would cost several times the work itself.
constexpr int64_t kSimdRow = 64;

template <typename T, typename Load, typename Op>
T reduce4(int64_t n, T init, Load load, Op op) {
  T a0 = init, a1 = init, a2 = init, a3 = init;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 = op(a0, load(i));
    a1 = op(a1, load(i + 1));
    a2 = op(a2, load(i + 2));
    a3 = op(a3, load(i + 3));
  }
  for (; i < n; ++i) a0 = op(a0, load(i));
  return op(op(a0, a1), op(a2, a3));
}

template <typename T>
T max_op(T a, T b) {
  return b > a ? b : a;
}

template <typename T>
T add_op(T a, T b) {
  return a + b;
}

template <typename T>
T row_max(const T* x, int64_t n) {
  auto load = [x](int64_t i) { return x[i]; };
  if (n < kSimdRow) return reduce4(n, -std::numeric_limits<T>::infinity(), load, max_op<T>);
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <typename T>
T row_sum(const T* x, int64_t n) {
  auto load = [x](int64_t i) { return x[i]; };
  if (n < kSimdRow) return reduce4(n, T(0), load, add_op<T>);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

template <typename T>
T row_dot(const T* a, const T* b, int64_t n) {
  auto load = [a, b](int64_t i) { return a[i] * b[i]; };
  if (n < kSimdRow) return reduce4(n, T(0), load, add_op<T>);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Per-thread scratch, grown on demand and reused across calls.
template <typename T>
T* scratch(int64_t n) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

struct Split {
  int64_t outer = 1, n = 1, inner = 1;
};

Split split_at(const Shape& shape, int64_t dim) {
  Split s;
  for (int64_t i = 0; i < dim; ++i) s.outer *= shape[i];
  s.n = shape[dim];
  for (size_t i = dim + 1; i < shape.size(); ++i) s.inner *= shape[i];
  return s;
}

// Calls fn(r0, r1) for tiles of rows of length n, tiles spread over threads when the work is large.
template <typename F>
void for_row_tiles(int64_t rows, int64_t n, F fn) {
  const int64_t tile_rows = std::max<int64_t>(1, kTileElems / std::max<int64_t>(1, n));
  const int64_t tiles = (rows + tile_rows - 1) / tile_rows;
  parallel_range(tiles, std::max<int64_t>(1, kGrain / (tile_rows * std::max<int64_t>(1, n))),
               [&](int64_t tb, int64_t te) {
                 for (int64_t t = tb; t < te; ++t) fn(t * tile_rows, std::min(rows, (t + 1) * tile_rows));
               });
}

// Calls fn(o, i0, w) for column tiles [i0, i0 + w) of each outer block.
template <typename F>
void for_col_tiles(const Split& s, F fn) {
  const int64_t ct = (s.inner + kColTile - 1) / kColTile;
  const int64_t per_item = s.n * std::min(s.inner, kColTile);
  parallel_range(s.outer * ct, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, per_item)), [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      int64_t o = it / ct, i0 = (it % ct) * kColTile;
      fn(o, i0, std::min(kColTile, s.inner - i0));
    }
  });
}

template <typename T>
void softmax_lastdim(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  for_row_tiles(rows, n, [&](int64_t r0, int64_t r1) {
    const int64_t len = (r1 - r0) * n;
    const T* xs = x + r0 * n;
    T* ys = y + r0 * n;
    for (int64_t r = 0; r < r1 - r0; ++r) {
      const T* xr = xs + r * n;
      T* yr = ys + r * n;
      const T m = row_max(xr, n);
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - m;
    }
    if (!log) {
      exp_to(ys, ys, len);
      for (int64_t r = 0; r < r1 - r0; ++r) {
        T* yr = ys + r * n;
        const T inv = T(1) / row_sum(yr, n);
        for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
      }
    } else {
      T* e = scratch<T>(len);
      exp_to(ys, e, len);
      for (int64_t r = 0; r < r1 - r0; ++r) {
        T* yr = ys + r * n;
        const T ls = std::log(row_sum(e + r * n, n));
        for (int64_t i = 0; i < n; ++i) yr[i] -= ls;
      }
    }
  });
}

template <typename T>
void softmax_strided(const T* x, T* y, const Split& s, bool log) {
  const int64_t n = s.n, inner = s.inner;
  for_col_tiles(s, [&](int64_t o, int64_t i0, int64_t w) {
    T* buf = scratch<T>(3 * kColTile);
    T *m = buf, *sum = buf + kColTile, *tmp = buf + 2 * kColTile;
    const T* xb = x + o * n * inner + i0;
    T* yb = y + o * n * inner + i0;
    for (int64_t i = 0; i < w; ++i) m[i] = xb[i];
    for (int64_t k = 1; k < n; ++k)
      for (int64_t i = 0; i < w; ++i) m[i] = xb[k * inner + i] > m[i] ? xb[k * inner + i] : m[i];
    for (int64_t i = 0; i < w; ++i) sum[i] = 0;
    for (int64_t k = 0; k < n; ++k) {
      const T* xr = xb + k * inner;
      T* yr = yb + k * inner;
      for (int64_t i = 0; i < w; ++i) yr[i] = xr[i] - m[i];
      T* e = log ? tmp : yr;
      exp_to(yr, e, w);
      for (int64_t i = 0; i < w; ++i) sum[i] += e[i];
    }
    if (!log) {
      for (int64_t i = 0; i < w; ++i) sum[i] = T(1) / sum[i];
      for (int64_t k = 0; k < n; ++k)
        for (int64_t i = 0; i < w; ++i) yb[k * inner + i] *= sum[i];
    } else {
      for (int64_t i = 0; i < w; ++i) sum[i] = std::log(sum[i]);
      for (int64_t k = 0; k < n; ++k)
        for (int64_t i = 0; i < w; ++i) yb[k * inner + i] -= sum[i];
    }
  });
}

// softmax: gx = y * (g - sum(g * y));  log_softmax: gx = g - exp(y) * sum(g).
template <typename T>
void softmax_backward_lastdim(const T* g, const T* y, T* gx, int64_t rows, int64_t n, bool log) {
  for_row_tiles(rows, n, [&](int64_t r0, int64_t r1) {
    T* e = nullptr;
    if (log) {
      e = scratch<T>((r1 - r0) * n);
      exp_to(y + r0 * n, e, (r1 - r0) * n);
    }
    for (int64_t r = r0; r < r1; ++r) {
      const T* gr = g + r * n;
      const T* yr = y + r * n;
      T* gxr = gx + r * n;
      if (!log) {
        const T d = row_dot(gr, yr, n);
        for (int64_t i = 0; i < n; ++i) gxr[i] = yr[i] * (gr[i] - d);
      } else {
        const T sg = row_sum(gr, n);
        const T* er = e + (r - r0) * n;
        for (int64_t i = 0; i < n; ++i) gxr[i] = gr[i] - er[i] * sg;
      }
    }
  });
}

template <typename T>
void softmax_backward_strided(const T* g, const T* y, T* gx, const Split& s, bool log) {
  const int64_t n = s.n, inner = s.inner;
  for_col_tiles(s, [&](int64_t o, int64_t i0, int64_t w) {
    T* buf = scratch<T>(2 * kColTile);
    T *acc = buf, *tmp = buf + kColTile;
    const int64_t base = o * n * inner + i0;
    for (int64_t i = 0; i < w; ++i) acc[i] = 0;
    for (int64_t k = 0; k < n; ++k) {
      const T* gr = g + base + k * inner;
      const T* yr = y + base + k * inner;
      if (log) {
        for (int64_t i = 0; i < w; ++i) acc[i] += gr[i];
      } else {
        for (int64_t i = 0; i < w; ++i) acc[i] += gr[i] * yr[i];
      }
    }
    for (int64_t k = 0; k < n; ++k) {
      const T* gr = g + base + k * inner;
      const T* yr = y + base + k * inner;
      T* gxr = gx + base + k * inner;
      if (log) {
        exp_to(yr, tmp, w);
        for (int64_t i = 0; i < w; ++i) gxr[i] = gr[i] - tmp[i] * acc[i];
      } else {
        for (int64_t i = 0; i < w; ++i) gxr[i] = yr[i] * (gr[i] - acc[i]);
      }
    }
  });
}

template <typename T>
void ce_forward(const T* x, const int64_t* t, T* loss, T* probs, int64_t N, int64_t C, T eps) {
  for_row_tiles(N, C, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    T* buf = scratch<T>(rows * (C + 2));
    T* mx = buf;
    T* sx = buf + rows;
    T* e = probs ? probs + r0 * C : buf + 2 * rows;
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + (r0 + r) * C;
      T* er = e + r * C;
      mx[r] = row_max(xr, C);
      for (int64_t i = 0; i < C; ++i) er[i] = xr[i] - mx[r];
      // Skipped without smoothing so that an infinite logit does not turn 0 * inf into NaN.
      sx[r] = eps != 0 ? row_sum(xr, C) : T(0);
    }
    exp_to(e, e, rows * C);
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + (r0 + r) * C;
      T* er = e + r * C;
      const T s = row_sum(er, C);
      const T lse = mx[r] + std::log(s);
      T l = lse - (1 - eps) * xr[t[r0 + r]];
      if (eps != 0) l -= eps * sx[r] / static_cast<T>(C);
      loss[r0 + r] = l;
      if (probs) {
        const T inv = T(1) / s;
        for (int64_t i = 0; i < C; ++i) er[i] *= inv;
      }
    }
  });
}

template <typename T>
void ce_backward(const T* p, const int64_t* t, const T* g, int64_t gstride, T scale, T* gx, int64_t N, int64_t C,
                 T eps) {
  const T u = eps / static_cast<T>(C), hit = 1 - eps;
  parallel_range(N, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T gr = g[r * gstride] * scale;
      const T* pr = p + r * C;
      T* gxr = gx + r * C;
      for (int64_t i = 0; i < C; ++i) gxr[i] = gr * (pr[i] - u);
      gxr[t[r]] -= gr * hit;
    }
  });
}

}  // namespace

Tensor softmax_forward(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.numel() == 0) return out;
  Split s = split_at(x.shape(), dim);
  QSLIM_DISPATCH_FLOAT(x.dtype(), op, [&] {
    if (s.inner == 1) {
      softmax_lastdim(xc.data<scalar_t>(), out.data<scalar_t>(), s.outer, s.n, log);
    } else {
      softmax_strided(xc.data<scalar_t>(), out.data<scalar_t>(), s, log);
    }
  });
  return out;
}

Tensor softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  Tensor g = grad.to(out.dtype()).contiguous();
  Tensor y = out.contiguous();
  Tensor gx = Tensor::empty(out.shape(), out.dtype());
  if (out.numel() == 0) return gx;
  Split s = split_at(out.shape(), dim);
  QSLIM_DISPATCH_FLOAT(out.dtype(), op, [&] {
    if (s.inner == 1) {
      softmax_backward_lastdim(g.data<scalar_t>(), y.data<scalar_t>(), gx.data<scalar_t>(), s.outer, s.n, log);
    } else {
      softmax_backward_strided(g.data<scalar_t>(), y.data<scalar_t>(), gx.data<scalar_t>(), s, log);
    }
  });
  return gx;
}

CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& target, double eps, bool want_probs) {
  const int64_t N = logits.size(0), C = logits.size(1);
  Tensor x = logits.contiguous();
  Tensor t = target.contiguous();
  CrossEntropyForward r;
  r.losses = Tensor::empty({N}, logits.dtype());
  if (want_probs) r.probs = Tensor::empty({N, C}, logits.dtype());
  if (N == 0) return r;
  QSLIM_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    ce_forward(x.data<scalar_t>(), t.data<int64_t>(), r.losses.data<scalar_t>(),
               want_probs ? r.probs.data<scalar_t>() : nullptr, N, C, static_cast<scalar_t>(eps));
  });
  return r;
}

Tensor cross_entropy_backward(const Tensor& probs, const Tensor& target, const Tensor& grad, double scale, double eps) {
  const int64_t N = probs.size(0), C = probs.size(1);
  Tensor g = grad.to(probs.dtype()).contiguous();
  Tensor t = target.contiguous();
  QSLIM_CHECK(g.numel() == 1 || g.numel() == N, "cross_entropy_backward: gradient of shape ", shape_str(g.shape()),
              " for ", N, " samples");
  Tensor gx = Tensor::empty({N, C}, probs.dtype());
  if (N == 0) return gx;
  QSLIM_DISPATCH_FLOAT(probs.dtype(), "cross_entropy_backward", [&] {
    ce_backward(probs.data<scalar_t>(), t.data<int64_t>(), g.data<scalar_t>(), g.numel() == 1 ? 0 : 1,
                static_cast<scalar_t>(scale), gx.data<scalar_t>(), N, C, static_cast<scalar_t>(eps));
  });
  return gx;
}

}  // namespace qslim::cpu
