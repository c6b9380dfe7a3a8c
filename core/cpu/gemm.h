// Row-major GEMM on raw pointers (Eigen inside the .cpp; nothing of Eigen leaks here).
//   C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C
// op(A) is A [m,k] with leading dimension lda, or, when trans_a, the transpose of A stored as
// [k,m] with leading dimension lda (likewise for B). With beta == 0, C is not read (it may hold
// garbage or NaN). Threading: a large product splits its rows or columns over the thread pool
// (thread_pool.h) when called outside a parallel job, and runs single-threaded inside one (e.g.
// within batch chunks), so callers choose per shape between batch-parallel loops and one threaded
// GEMM.
#pragma once
#include <cstdint>

namespace qslim::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace qslim::cpu
