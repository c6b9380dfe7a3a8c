// Weight-only INT8 GEMM (dynamic-quantized layers): W is dequantized a panel of output channels at
// a time into a per-thread buffer that stays in L2, and each panel goes through the float GEMM.
// The float weights never exist as a whole copy, and panels run in parallel when the work is large.
#include <algorithm>
#include <vector>

#include "core/cpu/gemm.h"
#include "core/cpu/int8_gemm.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kPanelFloats = 1 << 18;  // 1 MiB of dequantized weights per panel at most
constexpr int64_t kMaxPanel = 256;         // output channels per panel
constexpr double kParallelMacs = 1 << 21;

}  // namespace

void gemm_f32_s8w(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const int8_t* w, int64_t ldw,
                  const float* scale, int64_t scale_count, const float* bias, float* c, int64_t ldc) {
  QSLIM_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_f32_s8w: negative size m=", m, " n=", n, " k=", k);
  QSLIM_CHECK(scale_count == n || scale_count == 1, "gemm_f32_s8w: ", scale_count, " scales for n=", n,
              " output channels (expected ", n, " or 1)");
  QSLIM_CHECK(lda >= k && ldw >= k && ldc >= n, "gemm_f32_s8w: leading dimension too small (m=", m, " n=", n,
              " k=", k, " lda=", lda, " ldw=", ldw, " ldc=", ldc, ")");
  if (m == 0 || n == 0) return;
  QSLIM_CHECK(a != nullptr && w != nullptr && scale != nullptr && c != nullptr, "gemm_f32_s8w: null pointer");

  const int64_t threads = pool_threads();
  const bool parallel = threads > 1 && !in_parallel() && static_cast<double>(m) * n * k >= kParallelMacs;
  int64_t panel = std::clamp<int64_t>(kPanelFloats / std::max<int64_t>(k, 1) / 16 * 16, 16, kMaxPanel);
  if (parallel)  // at least two panels per thread when n allows, so both threads get work
    panel = std::min(panel, std::max<int64_t>(16, (n + 2 * threads - 1) / (2 * threads) + 15) / 16 * 16);
  const int64_t panels = (n + panel - 1) / panel;

  auto run_panel = [&](int64_t p) {
    const int64_t n0 = p * panel, cols = std::min(n, n0 + panel) - n0;
    thread_local std::vector<float> buf;
    if (buf.size() < static_cast<size_t>(cols * k)) buf.resize(static_cast<size_t>(cols * k));
    float* wf = buf.data();
    for (int64_t j = 0; j < cols; ++j) {
      const float s = scale[scale_count == 1 ? 0 : n0 + j];
      const int8_t* src = w + (n0 + j) * ldw;
      float* dst = wf + j * k;
      for (int64_t q = 0; q < k; ++q) dst[q] = static_cast<float>(src[q]) * s;
    }
    gemm(false, true, m, cols, k, 1.0f, a, lda, wf, k, 0.0f, c + n0, ldc);
    if (bias)
      for (int64_t i = 0; i < m; ++i) {
        float* row = c + i * ldc + n0;
        for (int64_t j = 0; j < cols; ++j) row[j] += bias[n0 + j];
      }
  };
  // Parallel panels each run a single-threaded GEMM (nested calls run inline); a single panel lets
  // the float GEMM split its rows instead.
  if (parallel && panels > 1)
    run_tasks(panels, run_panel);
  else
    for (int64_t p = 0; p < panels; ++p) run_panel(p);
}

}  // namespace qslim::cpu
