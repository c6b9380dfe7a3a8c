// SGEMM throughput: qslim's GEMM (core/cpu/gemm.h) against a plain Eigen product of the same size.
#pragma once
#include <cstdint>
#include <vector>

namespace qslim::tools {

struct GemmFigure {
  int64_t size;
  int threads;
  double qslim_gflops;
  double eigen_gflops;
};

std::vector<GemmFigure> bench_gemm(const std::vector<int64_t>& sizes, const std::vector<int>& threads);

}  // namespace qslim::tools
