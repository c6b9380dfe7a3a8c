// Median wall time of repeated calls, after warm-up (benchmarks report medians: the machine is noisy).
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

namespace qslim::tools {

template <typename F>
double median_seconds(F&& fn, int reps, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace qslim::tools
