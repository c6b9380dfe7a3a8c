#include "core/parallel.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <thread>

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

bool in_parallel_region() { return omp_in_parallel(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int threads = num_threads();
  if (threads <= 1 || n < grain * 2 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, n / std::max<int64_t>(grain, 1));
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    fn(b, e);
  }
}

}  // namespace qslim
