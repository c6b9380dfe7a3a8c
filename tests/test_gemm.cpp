// cpu::gemm against a naive triple loop: every transpose combination, odd sizes, padded leading
// dimensions, alpha/beta, and beta == 0 ignoring garbage in C.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu/gemm.h"
#include "core/parallel.h"

namespace {

template <typename T>
struct Case {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  T alpha, beta;
};

// C = alpha * op(A) op(B) + beta * C in double, straight from the definition.
template <typename T>
std::vector<double> reference(const Case<T>& c, const std::vector<T>& a, const std::vector<T>& b,
                              const std::vector<T>& c0) {
  std::vector<double> out(c0.begin(), c0.end());
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < c.k; ++p) {
        double av = c.ta ? a[p * c.lda + i] : a[i * c.lda + p];
        double bv = c.tb ? b[j * c.ldb + p] : b[p * c.ldb + j];
        s += av * bv;
      }
      double prev = c.beta == T(0) ? 0.0 : static_cast<double>(c.beta) * c0[i * c.ldc + j];
      out[i * c.ldc + j] = static_cast<double>(c.alpha) * s + prev;
    }
  return out;
}

template <typename T>
void check_case(const Case<T>& c, double tol, bool nan_in_c = false) {
  std::mt19937 rng(static_cast<unsigned>(c.m * 131 + c.n * 17 + c.k + c.ta * 2 + c.tb));
  std::uniform_real_distribution<double> dist(-1, 1);
  const int64_t a_rows = c.ta ? c.k : c.m, b_rows = c.tb ? c.n : c.k;
  std::vector<T> a(std::max<int64_t>(a_rows * c.lda, 1)), b(std::max<int64_t>(b_rows * c.ldb, 1)),
      cc(std::max<int64_t>(c.m * c.ldc, 1));
  for (auto& v : a) v = static_cast<T>(dist(rng));
  for (auto& v : b) v = static_cast<T>(dist(rng));
  for (auto& v : cc) v = nan_in_c ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(dist(rng));
  std::vector<double> want = reference(c, a, b, cc);
  qslim::cpu::gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), c.lda, b.data(), c.ldb, c.beta, cc.data(), c.ldc);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.ldc; ++j) {
      const int64_t idx = i * c.ldc + j;
      if (j >= c.n) {  // padding columns of C are untouched
        if (nan_in_c) {
          ASSERT_TRUE(std::isnan(cc[idx])) << "padding of C written at " << i << "," << j;
        } else {
          ASSERT_EQ(static_cast<double>(cc[idx]), want[idx]) << "padding of C written at " << i << "," << j;
        }
        continue;
      }
      ASSERT_NEAR(static_cast<double>(cc[idx]), want[idx], tol * (1 + std::abs(want[idx])))
          << "ta=" << c.ta << " tb=" << c.tb << " m=" << c.m << " n=" << c.n << " k=" << c.k << " at (" << i << ", "
          << j << ")";
    }
  }
}

template <typename T>
void all_combinations(double tol) {
  const int64_t sizes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {7, 13, 1}, {17, 33, 65}, {64, 48, 31}, {130, 67, 97}};
  for (auto& s : sizes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Case<T> c{ta == 1, tb == 1, s[0], s[1], s[2], 0, 0, 0, T(1), T(0)};
        c.lda = (c.ta ? c.m : c.k);
        c.ldb = (c.tb ? c.k : c.n);
        c.ldc = c.n;
        check_case(c, tol);
        // Padded leading dimensions, alpha and beta.
        c.lda += 3;
        c.ldb += 5;
        c.ldc += 2;
        c.alpha = T(-0.75);
        c.beta = T(1.5);
        check_case(c, tol);
        c.beta = T(1);
        check_case(c, tol);
      }
}

TEST(Gemm, FloatAllTransposesOddSizes) { all_combinations<float>(2e-5); }
TEST(Gemm, DoubleAllTransposesOddSizes) { all_combinations<double>(1e-12); }

TEST(Gemm, BetaZeroIgnoresGarbageInC) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Case<float> c{ta == 1, tb == 1, 9, 11, 6, 0, 0, 13, 2.0f, 0.0f};
      c.lda = c.ta ? c.m : c.k;
      c.ldb = c.tb ? c.k : c.n;
      check_case(c, 2e-5, /*nan_in_c=*/true);
    }
}

TEST(Gemm, ZeroInnerDimensionScalesC) {
  Case<double> c{false, false, 3, 4, 0, 1, 4, 4, 1.0, 0.5};
  check_case(c, 1e-12);
  c.beta = 0.0;
  check_case(c, 1e-12, /*nan_in_c=*/true);
}

TEST(Gemm, LargeThreadedMatchesReference) {
  // Large enough for Eigen to split the product over threads, and again inside a parallel region.
  Case<float> c{false, true, 256, 200, 300, 300, 300, 200, 1.0f, 0.0f};
  check_case(c, 1e-4);
  qslim::parallel_for(2, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) check_case(c, 1e-4);
  });
}

TEST(Gemm, RejectsTooSmallLeadingDimension) {
  std::vector<float> a(12), b(12), c(12);
  EXPECT_THROW(qslim::cpu::gemm(false, false, 3, 4, 3, 1.0f, a.data(), 2, b.data(), 4, 0.0f, c.data(), 4),
               std::runtime_error);
}

}  // namespace
