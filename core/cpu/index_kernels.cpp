#include "core/cpu/index_kernels.h"

#include <cstring>

#include "core/cpu/strided_loop.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

void check_indices(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  const int64_t* p = index.data<int64_t>();
  for (int64_t i = 0, n = index.numel(); i < n; ++i)
    QSLIM_CHECK(p[i] >= 0 && p[i] < size, op, ": index ", p[i], " is out of range for dim ", dim, " of size ", size);
}

void outer_inner(const Shape& s, int64_t dim, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= s[i];
  for (size_t i = dim + 1; i < s.size(); ++i) inner *= s[i];
}

}  // namespace

Tensor cat_dim(const std::vector<Tensor>& xs, int64_t dim, const Shape& out_shape) {
  Tensor out = Tensor::empty(out_shape, xs.at(0).dtype());
  int64_t outer, inner;
  outer_inner(out_shape, dim, outer, inner);
  const size_t es = dtype_size(out.dtype());
  const int64_t row = out_shape[dim] * inner;  // elements of out per outer index
  char* o = static_cast<char*>(out.raw_data());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    const int64_t chunk = x.size(dim) * inner;
    if (chunk > 0 && outer > 0) {
      Tensor xc = x.contiguous();
      const char* src = static_cast<const char*>(xc.raw_data());
      parallel_range(outer, std::max<int64_t>(1, kGrain / chunk), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) std::memcpy(o + (i * row + at) * es, src + i * chunk * es, chunk * es);
      });
    }
    at += chunk;
  }
  return out;
}

Tensor index_select_dim(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  Tensor ic = index.contiguous();
  const int64_t n = x.size(dim), K = ic.numel();
  check_indices(ic, n, dim, op);
  Shape out_shape = x.shape();
  out_shape[dim] = K;
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() == 0) return out;
  Tensor xc = x.contiguous();
  int64_t outer, inner;
  outer_inner(x.shape(), dim, outer, inner);
  const size_t es = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(xc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t* idx = ic.data<int64_t>();
  parallel_range(outer * K, std::max<int64_t>(1, kGrain / inner), [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const int64_t o = j / K, k = j % K;
      std::memcpy(dst + j * inner * es, src + (o * n + idx[k]) * inner * es, inner * es);
    }
  });
  return out;
}

void index_add_dim(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor ic = index.contiguous();
  Tensor sc = src.to(out.dtype()).contiguous();
  const int64_t n = out.size(dim), K = ic.numel();
  int64_t outer, inner;
  outer_inner(out.shape(), dim, outer, inner);
  const int64_t* idx = ic.data<int64_t>();
  QSLIM_DISPATCH_FLOAT(out.dtype(), "index_add", [&] {
    scalar_t* o = out.data<scalar_t>();
    const scalar_t* s = sc.data<scalar_t>();
    // Parallel over `outer` only: different k may hit the same destination row.
    parallel_range(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K * inner)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t k = 0; k < K; ++k) {
          scalar_t* d = o + (i * n + idx[k]) * inner;
          const scalar_t* r = s + (i * K + k) * inner;
          for (int64_t c = 0; c < inner; ++c) d[c] += r[c];
        }
    });
  });
  out.bump_version();
}

Tensor gather_dim(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  Tensor ic = index.contiguous();
  check_indices(ic, x.size(dim), dim, op);
  Tensor out = Tensor::empty(ic.shape(), x.dtype());
  if (out.numel() == 0) return out;
  // x's strides with the gathered dim zeroed: walking the index's shape then gives the base offset,
  // and the index value times the dim stride selects the element.
  Shape xst = x.strides();
  const int64_t dstride = xst[dim];
  xst[dim] = 0;
  const int64_t* idx = ic.data<int64_t>();
  QSLIM_DISPATCH_ALL(x.dtype(), op, [&] {
    const scalar_t* xb = static_cast<const scalar_t*>(x.impl().storage->data());
    scalar_t* o = out.data<scalar_t>();
    for_each_row<2>(ic.shape(), {ic.strides(), xst}, {0, x.offset()},
                    [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                      for (int64_t i = 0; i < n; ++i)
                        o[off[0] + i] = xb[off[1] + i * st[1] + idx[off[0] + i] * dstride];
                    });
  });
  return out;
}

void scatter_add_dim(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor ic = index.contiguous();
  Tensor sc = src.to(out.dtype()).contiguous();
  Shape ost = out.strides();
  const int64_t dstride = ost[dim];
  ost[dim] = 0;
  const int64_t* idx = ic.data<int64_t>();
  QSLIM_DISPATCH_FLOAT(out.dtype(), "scatter_add", [&] {
    scalar_t* o = out.data<scalar_t>();
    const scalar_t* s = sc.data<scalar_t>();
    for_each_row<2>(ic.shape(), {ic.strides(), ost}, {0, 0},
                    [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                      for (int64_t i = 0; i < n; ++i)
                        o[off[1] + i * st[1] + idx[off[0] + i] * dstride] += s[off[0] + i];
                    });
  });
  out.bump_version();
}

}  // namespace qslim::cpu
