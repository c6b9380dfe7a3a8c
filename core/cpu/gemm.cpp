#include "core/cpu/gemm.h"

// GCC 12 reports false -Wmaybe-uninitialized positives inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Eigen's own threading uses OpenMP teams, whose barriers stall on a loaded machine; large products
// are split over the thread pool here instead (see thread_pool.h).
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>

#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <typename T, typename CM, typename AM, typename BM>
void product(CM& c, const AM& a, const BM& b, T alpha) {
  if (alpha == T(1))
    c.noalias() += a * b;
  else
    c.noalias() += alpha * a * b;
}

template <typename T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  QSLIM_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=", m, " n=", n, " k=", k);
  if (m == 0 || n == 0) return;
  QSLIM_CHECK(ldc >= n && lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n), "gemm: leading dimension too small (m=",
              m, " n=", n, " k=", k, " lda=", lda, " ldb=", ldb, " ldc=", ldc, ", trans_a=", trans_a,
              ", trans_b=", trans_b, ")");
  MutMap<T> cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0))
    cm.setZero();
  else if (beta != T(1))
    cm *= beta;
  if (k == 0 || alpha == T(0)) return;
  // A stored [rows, cols] row-major; the transposed case is a column-major view of the same memory.
  ConstMap<T> am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  ConstMap<T> bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b)
    product(cm, am, bm, alpha);
  else if (trans_a && !trans_b)
    product(cm, am.transpose(), bm, alpha);
  else if (!trans_a && trans_b)
    product(cm, am, bm.transpose(), alpha);
  else
    product(cm, am.transpose(), bm.transpose(), alpha);
}

// Products at least this large split their output over the pool's threads (when not already
// inside a parallel job); slices stay wide enough for Eigen's register blocking.
constexpr double kSplitFlops = 2e6;
constexpr int64_t kMinSlice = 64;

template <typename T>
void gemm_impl(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const int64_t threads = pool_threads();
  const bool split = threads > 1 && 2.0 * m * n * k >= kSplitFlops && std::max(m, n) >= 2 * kMinSlice && !in_parallel();
  if (!split) return gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  QSLIM_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=", m, " n=", n, " k=", k);
  const bool by_rows = m >= n;
  const int64_t len = by_rows ? m : n;
  const int64_t slices = std::min<int64_t>(2 * threads, len / kMinSlice);
  run_tasks(slices, [&](int64_t s) {
    const int64_t i0 = len * s / slices, i1 = len * (s + 1) / slices;
    if (by_rows) {  // rows i0..i1 of op(A) and C
      const T* as = trans_a ? a + i0 : a + i0 * lda;
      gemm_serial(trans_a, trans_b, i1 - i0, n, k, alpha, as, lda, b, ldb, beta, c + i0 * ldc, ldc);
    } else {  // columns i0..i1 of op(B) and C
      const T* bs = trans_b ? b + i0 * ldb : b + i0;
      gemm_serial(trans_a, trans_b, m, i1 - i0, k, alpha, a, lda, bs, ldb, beta, c + i0, ldc);
    }
  });
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_impl<float>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_impl<double>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace qslim::cpu
