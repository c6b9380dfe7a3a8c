// Internal: walks an N-d index space in row-major order for K operands with their own strides,
// calling fn(offsets, inner_len, inner_strides) once per innermost row. Kernels use it for the
// general (non-contiguous, broadcast) case; contiguous operands take flat fast paths instead.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/shape.h"

namespace qslim::cpu {

template <size_t K, typename F>
void for_each_row(const Shape& shape, const std::array<Shape, K>& strides, const std::array<int64_t, K>& base,
                  F&& fn) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  for (int64_t d : shape)
    if (d == 0) return;
  std::array<int64_t, K> inner_stride{};
  int64_t inner = 1;
  if (nd > 0) {
    inner = shape[nd - 1];
    for (size_t k = 0; k < K; ++k) inner_stride[k] = strides[k][nd - 1];
  }
  std::vector<int64_t> idx(nd > 0 ? nd - 1 : 0, 0);
  std::array<int64_t, K> off = base;
  while (true) {
    fn(off, inner, inner_stride);
    int64_t d = nd - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        for (size_t k = 0; k < K; ++k) off[k] += strides[k][d];
        break;
      }
      for (size_t k = 0; k < K; ++k) off[k] -= strides[k][d] * (shape[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// Strides of `t_shape`/`t_strides` broadcast to `out_shape` (0 where the operand is broadcast).
inline Shape broadcast_strides(const Shape& t_shape, const Shape& t_strides, const Shape& out_shape) {
  Shape s(out_shape.size(), 0);
  size_t lead = out_shape.size() - t_shape.size();
  for (size_t i = 0; i < t_shape.size(); ++i) s[lead + i] = t_shape[i] == 1 ? 0 : t_strides[i];
  return s;
}

}  // namespace qslim::cpu
