// Internal: the threading policy of the conv kernels. A batch is split into a few chunks per
// thread, run as thread-pool tasks (thread_pool.h) with single-threaded GEMMs, so that a thread
// that is descheduled on a loaded machine hands its chunks to the others; unless the work is too
// small to pay for the hand-off, or a few large images would split unevenly: then images run one
// after another and each GEMM may split itself over the threads. Never both.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/cpu/thread_pool.h"

namespace qslim::cpu {

// Below this much work a parallel job costs more than it saves.
constexpr double kMinParallelFlops = 2e5;
// Above this per-image work, a threaded GEMM beats an uneven split of a few images over threads.
constexpr double kThreadedGemmFlops = 2e7;
// Chunks smaller than this are not worth a task of their own.
constexpr double kMinChunkFlops = 4e6;

inline int64_t batch_chunks(int64_t n, double flops_per_image) {
  const int64_t threads = pool_threads();
  if (threads <= 1 || n < 2 || in_parallel() || n * flops_per_image < kMinParallelFlops) return 1;
  if (n < 4 * threads && n % threads != 0 && flops_per_image > kThreadedGemmFlops) return 1;
  const int64_t by_work = static_cast<int64_t>(n * flops_per_image / kMinChunkFlops);
  return std::clamp<int64_t>(by_work, std::min(threads, n), std::min(4 * threads, n));
}

// fn(chunk, begin, end) over `chunks` contiguous slices of [0, n), in parallel when chunks > 1.
template <typename F>
void run_chunks(int64_t chunks, int64_t n, F&& fn) {
  if (chunks <= 1) {
    fn(int64_t{0}, int64_t{0}, n);
    return;
  }
  run_tasks(chunks, [&](int64_t c) { fn(c, n * c / chunks, n * (c + 1) / chunks); });
}

}  // namespace qslim::cpu
