// Median wall time of repeated calls, after warm-up (benchmarks report medians: the machine is noisy).
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace qslim::tools {

// At least `reps` timed calls, and more for fast calls, so that the timed calls together last about
// `min_total_s`: the median of 10 calls of a millisecond moved by +-15 % between runs (LeNet).
template <typename F>
double median_seconds(F&& fn, int reps, int warmup, double min_total_s = 0.5, int max_reps = 20000) {
  using Clock = std::chrono::steady_clock;
  auto seconds_of = [&] {
    const auto t0 = Clock::now();
    fn();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  double last = 0;
  for (int i = 0; i < warmup; ++i) last = seconds_of();
  if (last > 0) reps = std::max(reps, static_cast<int>(std::min<double>(max_reps, std::ceil(min_total_s / last))));
  std::vector<double> t;
  t.reserve(reps);
  for (int i = 0; i < reps; ++i) t.push_back(seconds_of());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace qslim::tools
