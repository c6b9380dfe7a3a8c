#include "core/parallel.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <thread>

#include "core/cpu/thread_pool.h"

namespace qslim {
namespace {
int g_threads = 0;

int default_threads() {
  if (const char* env = std::getenv("QSLIM_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}
}  // namespace

int num_threads() {
  if (g_threads == 0) set_num_threads(0);
  return g_threads;
}

void set_num_threads(int n) {
  g_threads = n > 0 ? n : default_threads();
  omp_set_num_threads(g_threads);
  Eigen::setNbThreads(g_threads);
}

bool in_parallel_region() { return cpu::in_parallel(); }

// On the kernels' thread pool rather than an OpenMP team: under load an OpenMP barrier waits for
// descheduled members (see core/cpu/thread_pool.h), which made QAT's quantizer loops cost 4-10x.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  cpu::parallel_range(n, std::max<int64_t>(grain, 1), [&](int64_t b, int64_t e) { fn(b, e); });
}

}  // namespace qslim
