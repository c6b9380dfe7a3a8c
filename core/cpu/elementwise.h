// Internal: templates for elementwise kernels. Contiguous operands of equal shape take a flat,
// vectorisable, grain-parallel loop; anything else (views, broadcasting) walks rows.
#pragma once
#include "core/cpu/strided_loop.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace qslim::cpu {

constexpr int64_t kElementwiseGrain = 1 << 15;

// out[i] = f(a[i])
template <typename T, typename U = T, typename F>
Tensor unary_map(const Tensor& a, F f) {
  Tensor out = Tensor::empty(a.shape(), dtype_of<U>::value);
  U* o = out.data<U>();
  if (a.is_contiguous()) {
    const T* p = a.data<T>();
    parallel_range(a.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = f(p[i]);
    });
    return out;
  }
  const T* base = static_cast<const T*>(a.impl().storage->data());
  for_each_row<2>(a.shape(), {out.strides(), a.strides()}, {0, a.offset()},
                  [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                    for (int64_t i = 0; i < n; ++i) o[off[0] + i] = f(base[off[1] + i * st[1]]);
                  });
  return out;
}

// out = f(a, b) with NumPy broadcasting.
template <typename T, typename U = T, typename F>
Tensor binary_map(const Tensor& a, const Tensor& b, const char* op, F f) {
  QSLIM_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", dtype_name(a.dtype()), " vs ", dtype_name(b.dtype()),
              " (shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), ")");
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, dtype_of<U>::value);
  U* o = out.data<U>();
  if (a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous()) {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    parallel_range(out.numel(), kElementwiseGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(pa[i], pb[i]);
    });
    return out;
  }
  const T* ba = static_cast<const T*>(a.impl().storage->data());
  const T* bb = static_cast<const T*>(b.impl().storage->data());
  for_each_row<3>(shape,
                  {out.strides(), broadcast_strides(a.shape(), a.strides(), shape),
                   broadcast_strides(b.shape(), b.strides(), shape)},
                  {0, a.offset(), b.offset()},
                  [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                    U* po = o + off[0];
                    const T* pa = ba + off[1];
                    const T* pb = bb + off[2];
                    if (st[1] == 1 && st[2] == 0) {
                      const T vb = *pb;
                      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
                    } else if (st[1] == 0 && st[2] == 1) {
                      const T va = *pa;
                      for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
                    } else {
                      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * st[1]], pb[i * st[2]]);
                    }
                  });
  return out;
}

// a[i] = f(a[i], b[i]) with b broadcast to a's shape; a may be any strided view.
template <typename T, typename F>
void binary_inplace(const Tensor& a, const Tensor& b, const char* op, F f) {
  QSLIM_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", dtype_name(a.dtype()), " vs ", dtype_name(b.dtype()));
  QSLIM_CHECK(broadcast_shapes(a.shape(), b.shape(), op) == a.shape(), op, ": operand of shape ",
              shape_str(b.shape()), " cannot be broadcast to the in-place target shape ", shape_str(a.shape()));
  T* base_a = static_cast<T*>(a.impl().storage->data());
  const T* base_b = static_cast<const T*>(b.impl().storage->data());
  if (a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous()) {
    T* pa = base_a + a.offset();
    const T* pb = base_b + b.offset();
    parallel_range(a.numel(), kElementwiseGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) pa[i] = f(pa[i], pb[i]);
    });
  } else {
    for_each_row<2>(a.shape(), {a.strides(), broadcast_strides(b.shape(), b.strides(), a.shape())},
                    {a.offset(), b.offset()},
                    [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                      for (int64_t i = 0; i < n; ++i)
                        base_a[off[0] + i * st[0]] = f(base_a[off[0] + i * st[0]], base_b[off[1] + i * st[1]]);
                    });
  }
  a.bump_version();
}

}  // namespace qslim::cpu
