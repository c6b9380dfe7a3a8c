#include "core/cpu/reduce_kernels.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

constexpr int64_t kSumBlock = 1024;

// Sum of a contiguous run: SIMD lanes per block, blocks combined in double for floating types.
template <typename T>
T contiguous_sum(const T* p, int64_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    double total = 0;
    for (int64_t b = 0; b < n; b += kSumBlock) {
      const int64_t e = std::min(n, b + kSumBlock);
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = b; i < e; ++i) s += p[i];
      total += static_cast<double>(s);
    }
    return static_cast<T>(total);
  } else {
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += p[i];
    return s;
  }
}

// out[o, i] = sum_m in[o, m, i] for a contiguous input viewed as [outer, mid, inner].
template <typename T>
void sum_mid(const T* in, T* out, int64_t outer, int64_t mid, int64_t inner) {
  if (mid == 0) {
    std::fill(out, out + outer * inner, T(0));
    return;
  }
  if (inner == 1) {
    if (outer == 1 && mid >= 2 * kGrain) {
      // One long sum: fixed-size chunks (so the result does not depend on the thread count).
      const int64_t chunks = (mid + kGrain - 1) / kGrain;
      std::vector<double> part(chunks);
      parallel_range(chunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          const int64_t lo = c * kGrain;
          part[c] = static_cast<double>(contiguous_sum(in + lo, std::min(mid, lo + kGrain) - lo));
        }
      });
      double total = 0;
      for (double v : part) total += v;
      out[0] = static_cast<T>(total);
      return;
    }
    parallel_range(outer, std::max<int64_t>(1, kGrain / mid), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) out[o] = contiguous_sum(in + o * mid, mid);
    });
    return;
  }
  // Lanes across `inner`; split `inner` too when there are few outer blocks.
  const int64_t tile = outer >= 4 ? inner : std::max<int64_t>(64, inner / 8);
  const int64_t tiles = (inner + tile - 1) / tile;
  parallel_range(outer * tiles, std::max<int64_t>(1, kGrain / (mid * std::min(tile, inner))), [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t o = it / tiles, i0 = (it % tiles) * tile, w = std::min(tile, inner - i0);
      const T* src = in + o * mid * inner + i0;
      T* dst = out + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) dst[i] = src[i];
      for (int64_t m = 1; m < mid; ++m) {
        const T* row = src + m * inner;
        for (int64_t i = 0; i < w; ++i) dst[i] += row[i];
      }
    }
  });
}

// True when v should replace the current extreme `best` (strictly better, or the first NaN).
template <typename T, bool kMax>
bool better(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(best)) return false;
    if (std::isnan(v)) return true;
  }
  return kMax ? v > best : v < best;
}

template <typename T, bool kMax>
void minmax_kernel(const T* x, T* vals, int64_t* idx, int64_t outer, int64_t n, int64_t inner) {
  parallel_range(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * inner)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const T* xb = x + o * n * inner;
      int64_t* ib = idx + o * inner;
      if (inner == 1) {
        T best = xb[0];
        int64_t arg = 0;
        for (int64_t k = 1; k < n; ++k)
          if (better<T, kMax>(xb[k], best)) {
            best = xb[k];
            arg = k;
          }
        ib[0] = arg;
        if (vals) vals[o] = best;
        continue;
      }
      // Lanes across `inner` so the scan over n reads contiguous rows.
      for (int64_t i = 0; i < inner; ++i) ib[i] = 0;
      for (int64_t k = 1; k < n; ++k) {
        const T* row = xb + k * inner;
        for (int64_t i = 0; i < inner; ++i)
          if (better<T, kMax>(row[i], xb[ib[i] * inner + i])) ib[i] = k;
      }
      if (vals)
        for (int64_t i = 0; i < inner; ++i) vals[o * inner + i] = xb[ib[i] * inner + i];
    }
  });
}

}  // namespace

Tensor sum_dims(const Tensor& x, const std::vector<bool>& reduce) {
  const int64_t nd = x.dim();
  QSLIM_CHECK(static_cast<int64_t>(reduce.size()) == nd, "sum: ", reduce.size(), " dim flags for a tensor of rank ",
              nd);
  Tensor cur = x.contiguous();
  Shape shape = x.shape();
  bool any = false;
  // Reduce each run of adjacent reduced dims in one pass, last run first.
  for (int64_t d = nd - 1; d >= 0; --d) {
    if (!reduce[d]) continue;
    int64_t d0 = d;
    while (d0 > 0 && reduce[d0 - 1]) --d0;
    int64_t outer = 1, mid = 1, inner = 1;
    for (int64_t i = 0; i < d0; ++i) outer *= shape[i];
    for (int64_t i = d0; i <= d; ++i) mid *= shape[i];
    for (int64_t i = d + 1; i < nd; ++i) inner *= shape[i];
    Shape next = shape;
    for (int64_t i = d0; i <= d; ++i) next[i] = 1;
    Tensor out = Tensor::empty(next, x.dtype());
    QSLIM_DISPATCH_ALL(x.dtype(), "sum", [&] {
      if (out.numel() > 0) sum_mid(cur.data<scalar_t>(), out.data<scalar_t>(), outer, mid, inner);
    });
    cur = out;
    shape = next;
    d = d0;
    any = true;
  }
  // A reduction over nothing still returns a new tensor, never an alias of x.
  if (any || !cur.is_same(x)) return cur;
  Tensor copy = Tensor::empty(x.shape(), x.dtype());
  copy.copy_(x);
  return copy;
}

void minmax_dim(const Tensor& x, int64_t dim, bool is_max, Tensor* values, Tensor& indices) {
  const char* op = is_max ? "max" : "min";
  QSLIM_CHECK(x.size(dim) > 0, op, ": cannot reduce over dim ", dim, " of size 0 in shape ", shape_str(x.shape()));
  Shape out_shape = x.shape();
  out_shape[dim] = 1;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= x.size(i);
  for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
  Tensor xc = x.contiguous();
  indices = Tensor::empty(out_shape, DType::I64);
  if (values) *values = Tensor::empty(out_shape, x.dtype());
  if (xc.numel() == 0) return;
  QSLIM_DISPATCH_ALL(x.dtype(), op, [&] {
    scalar_t* v = values ? values->data<scalar_t>() : nullptr;
    if (is_max) {
      minmax_kernel<scalar_t, true>(xc.data<scalar_t>(), v, indices.data<int64_t>(), outer, x.size(dim), inner);
    } else {
      minmax_kernel<scalar_t, false>(xc.data<scalar_t>(), v, indices.data<int64_t>(), outer, x.size(dim), inner);
    }
  });
}

}  // namespace qslim::cpu
