// Internal: the threading policy of the conv kernels. A batch is split into one chunk per thread
// (each chunk runs single-threaded GEMMs), unless the work is too small to pay for a parallel
// region or a few large images would split unevenly; then images run one after another and
// each GEMM may use Eigen's threads. Never both.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/parallel.h"

namespace qslim::cpu {

// Below this much work a parallel region costs more than it saves.
constexpr double kMinParallelFlops = 2e5;
// Above this per-image work, a threaded GEMM beats an uneven split of a few images over threads.
constexpr double kThreadedGemmFlops = 2e7;

inline int64_t batch_chunks(int64_t n, double flops_per_image) {
  const int64_t threads = num_threads();
  if (threads <= 1 || n < 2 || in_parallel_region() || n * flops_per_image < kMinParallelFlops) return 1;
  const int64_t chunks = std::min(threads, n);
  if (n % chunks != 0 && n < 4 * chunks && flops_per_image > kThreadedGemmFlops) return 1;
  return chunks;
}

// fn(chunk, begin, end) over `chunks` contiguous slices of [0, n), in parallel when chunks > 1.
template <typename F>
void run_chunks(int64_t chunks, int64_t n, F&& fn) {
  if (chunks <= 1) {
    fn(0, 0, n);
    return;
  }
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, n * c / chunks, n * (c + 1) / chunks);
  });
}

}  // namespace qslim::cpu
