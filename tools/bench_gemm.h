// GEMM throughput: qslim's SGEMM (core/cpu/gemm.h) against a plain Eigen product of the same size,
// and the INT8 GEMM (core/cpu/int8_gemm.h) against qslim's own SGEMM, per INT8 ISA path.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qslim::tools {

struct GemmFigure {
  int64_t size;
  int threads;
  double qslim_gflops;
  double eigen_gflops;
};

std::vector<GemmFigure> bench_gemm(const std::vector<int64_t>& sizes, const std::vector<int>& threads);

// size^3 INT8 GEMM (uint8 x int8): raw int32 output and uint8 output with requantization, in
// GOP/s (2 ops per multiply-add), next to qslim's SGEMM of the same size in the same conditions.
struct Int8GemmFigure {
  int64_t size;
  int threads;
  std::string isa;  // int8_isa_name()
  double s32_gops;
  double u8_gops;
  double sgemm_gflops;
};

// One figure per thread count and per ISA path this CPU supports (the scalar path only when no
// SIMD path exists, unless with_scalar: it is slow and only a fallback).
std::vector<Int8GemmFigure> bench_int8_gemm(int64_t size, const std::vector<int>& threads, bool with_scalar = false);
// "int8 gemm 1024^3 2 thr avx512-vnni: s32 ... GOP/s  u8 ... GOP/s  sgemm ... GFLOP/s  (3.5x / 3.4x)"
void print_int8_gemm(const std::vector<Int8GemmFigure>& figures);
// [{size, threads, isa, s32_gops, u8_gops, sgemm_gflops, ratio_s32, ratio_u8}, ...]
nlohmann::json int8_gemm_json(const std::vector<Int8GemmFigure>& figures);

}  // namespace qslim::tools
