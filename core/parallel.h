// Thread settings and a grain-sized parallel_for. Small work stays single-threaded: OpenMP's
// fork/join costs microseconds, more than many of the element loops it would split.
#pragma once
#include <cstdint>
#include <functional>

namespace qslim {

int num_threads();
// Sets OpenMP and Eigen thread counts. 0 means: QSLIM_NUM_THREADS if set, else hardware threads.
void set_num_threads(int n);
bool in_parallel_region();

// Calls fn(begin, end) over chunks of [0, n) of at least `grain` elements, on the kernels' thread
// pool (cpu::parallel_range); inline when n < 2 * grain or nested. The number of chunks is not
// fixed: callers must not assume one chunk per thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace qslim
