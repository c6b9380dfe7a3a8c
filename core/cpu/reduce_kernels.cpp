#include "core/cpu/reduce_kernels.h"

#include <cmath>
#include <type_traits>

#include "core/parallel.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

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
  parallel_for(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * inner)), [&](int64_t b, int64_t e) {
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
