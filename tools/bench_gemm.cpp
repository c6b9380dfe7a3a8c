#include "tools/bench_gemm.h"

#include <Eigen/Core>

#include "core/cpu/gemm.h"
#include "core/parallel.h"
#include "tools/timing.h"

namespace qslim::tools {

std::vector<GemmFigure> bench_gemm(const std::vector<int64_t>& sizes, const std::vector<int>& threads) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  std::vector<GemmFigure> out;
  int saved = num_threads();
  for (int th : threads) {
    set_num_threads(th);
    for (int64_t n : sizes) {
      Mat a = Mat::Random(n, n), b = Mat::Random(n, n), c(n, n);
      double flops = 2.0 * n * n * n;
      int reps = n <= 256 ? 50 : n <= 512 ? 12 : 5;
      double t_q = median_seconds(
          [&] { cpu::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); }, reps, 2);
      double t_e = median_seconds([&] { c.noalias() = a * b; }, reps, 2);
      out.push_back({n, th, flops / t_q / 1e9, flops / t_e / 1e9});
    }
  }
  set_num_threads(saved);
  return out;
}

}  // namespace qslim::tools
