#include "tools/bench_gemm.h"

#include <Eigen/Core>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/cpu/gemm.h"
#include "core/cpu/int8_gemm.h"
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

std::vector<Int8GemmFigure> bench_int8_gemm(int64_t size, const std::vector<int>& threads, bool with_scalar) {
  const int64_t n = size;
  std::mt19937 rng(0);
  std::vector<uint8_t> a(n * n), c8(n * n);
  std::vector<int8_t> w(n * n);
  std::vector<int32_t> c32(n * n);
  for (auto& x : a) x = static_cast<uint8_t>(rng());
  for (auto& x : w) x = static_cast<int8_t>(rng());
  std::vector<float> af(n * n), bf(n * n), cf(n * n);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : af) x = u(rng);
  for (auto& x : bf) x = u(rng);
  // A realistic requantization: accumulators of about +-74 * 74 * sqrt(n) onto a few hundred steps.
  const float multiplier = 100.0f / (74.0f * 74.0f * std::sqrt(static_cast<float>(n)));
  cpu::Int8Output out_u8;
  out_u8.zero_point = 128;

  std::vector<cpu::Int8Isa> isas;
  for (cpu::Int8Isa isa : {cpu::Int8Isa::Avx512Vnni, cpu::Int8Isa::Avx2, cpu::Int8Isa::Scalar})
    if (cpu::int8_isa_supported(isa) && (isa != cpu::Int8Isa::Scalar || with_scalar || isas.empty()))
      isas.push_back(isa);

  std::vector<Int8GemmFigure> figures;
  const int saved = num_threads();
  const double ops = 2.0 * n * n * n;
  for (int th : threads) {
    set_num_threads(th);
    const double t_f32 = median_seconds(
        [&] { cpu::gemm(false, false, n, n, n, 1.0f, af.data(), n, bf.data(), n, 0.0f, cf.data(), n); }, 5, 2);
    for (cpu::Int8Isa isa : isas) {
      const cpu::PackedInt8Weights pw =
          cpu::pack_int8_weights(w.data(), n, n, n, nullptr, out_u8.zero_point, &multiplier, 1, isa);
      const int reps = isa == cpu::Int8Isa::Scalar ? 3 : 10, warmup = isa == cpu::Int8Isa::Scalar ? 1 : 2;
      const double t_s32 =
          median_seconds([&] { cpu::gemm_u8s8_s32(n, a.data(), n, pw, c32.data(), n); }, reps, warmup);
      const double t_u8 =
          median_seconds([&] { cpu::gemm_u8s8_u8(n, a.data(), n, pw, out_u8, c8.data(), n); }, reps, warmup);
      figures.push_back({n, th, cpu::int8_isa_name(isa), ops / t_s32 / 1e9, ops / t_u8 / 1e9, ops / t_f32 / 1e9});
    }
  }
  set_num_threads(saved);
  return figures;
}

void print_int8_gemm(const std::vector<Int8GemmFigure>& figures) {
  for (const auto& f : figures)
    std::printf("int8 gemm %4lld^3 %d thr %-11s: s32 %7.1f GOP/s  u8 %7.1f GOP/s  vs own sgemm %6.1f GFLOP/s "
                "(%.2fx / %.2fx)\n",
                static_cast<long long>(f.size), f.threads, f.isa.c_str(), f.s32_gops, f.u8_gops, f.sgemm_gflops,
                f.s32_gops / f.sgemm_gflops, f.u8_gops / f.sgemm_gflops);
}

nlohmann::json int8_gemm_json(const std::vector<Int8GemmFigure>& figures) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& f : figures)
    rows.push_back({{"size", f.size},
                    {"threads", f.threads},
                    {"isa", f.isa},
                    {"s32_gops", f.s32_gops},
                    {"u8_gops", f.u8_gops},
                    {"sgemm_gflops", f.sgemm_gflops},
                    {"ratio_s32", f.s32_gops / f.sgemm_gflops},
                    {"ratio_u8", f.u8_gops / f.sgemm_gflops}});
  return rows;
}

}  // namespace qslim::tools
