// Helpers for the fused quantization kernels: a contiguous tensor quantized along `axis` is seen
// as [outer, channels, inner], and a flat element range is walked in runs that share parameters.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "core/tensor.h"

namespace qslim::quant::detail {

// Elements per parallel chunk: below this a fork/join costs more than the loop.
inline constexpr int64_t kQuantGrain = 1 << 15;

struct ChannelLayout {
  int64_t outer = 1, channels = 1, inner = 1;
  int64_t numel() const { return outer * channels * inner; }
};

// axis == -1 (or a single channel) collapses to one run of all elements.
inline ChannelLayout channel_layout(const Shape& shape, int64_t axis) {
  ChannelLayout l;
  const int64_t n = numel_of(shape);
  if (axis < 0 || shape[axis] == 1) {
    l.inner = n;
    return l;
  }
  l.channels = shape[axis];
  for (int64_t d = 0; d < axis; ++d) l.outer *= shape[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(shape.size()); ++d) l.inner *= shape[d];
  return l;
}

// Walks [b, e) of a layout. With inner > 1 every run lies in one channel: run(i, len, c). With
// inner == 1 consecutive elements are consecutive channels: row(i, len, c0) covers channels
// c0..c0+len-1 (kernels then read per-channel parameter arrays, which still vectorises).
template <typename Run, typename Row>
inline void for_each_run(const ChannelLayout& l, int64_t b, int64_t e, Run&& run, Row&& row) {
  if (l.inner > 1 || l.channels == 1) {
    for (int64_t i = b; i < e;) {
      const int64_t r = i / l.inner;
      const int64_t end = std::min(e, (r + 1) * l.inner);
      run(i, end - i, r % l.channels);
      i = end;
    }
  } else {
    for (int64_t i = b; i < e;) {
      const int64_t r = i / l.channels;
      const int64_t end = std::min(e, (r + 1) * l.channels);
      row(i, end - i, i - r * l.channels);
      i = end;
    }
  }
}

// Number of chunks a reduction over n elements is split into (one partial result each). Partials
// are combined in chunk order, so results do not vary from run to run.
inline int64_t reduction_chunks(int64_t n) {
  const int64_t by_size = std::max<int64_t>(1, n / kQuantGrain);
  return std::min<int64_t>(by_size, std::max(1, num_threads()));
}

// Calls fn(b, e) over [0, n) in `chunks` fixed chunks, in parallel when there are several.
template <typename F>
inline void for_each_chunk(int64_t n, int64_t chunks, F&& fn) {
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, n * c / chunks, n * (c + 1) / chunks);
  });
}

// Per-channel parameters in the kernel's dtype.
template <typename T>
struct ChannelParams {
  std::vector<T> s, inv, z;
};

}  // namespace qslim::quant::detail
