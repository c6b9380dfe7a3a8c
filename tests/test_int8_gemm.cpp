// INT8 GEMM (core/cpu/int8_gemm.h): every ISA path this CPU supports is bit-exact against the
// reference formula (uint8 / int8 / float outputs with clamps) and against a naive int32 triple
// loop (raw accumulators), on odd shapes, padded strides, extreme values; threaded results equal
// single-threaded ones; errors are clear. gemm_f32_s8w matches dequantize-then-multiply.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/int8_gemm.h"
#include "core/error.h"
#include "core/parallel.h"
#include "tests/support/test_support.h"

using qslim::testing::expect_error;

namespace {

using namespace qslim::cpu;

struct ThreadCount {
  explicit ThreadCount(int n) : saved(qslim::num_threads()) { qslim::set_num_threads(n); }
  ~ThreadCount() { qslim::set_num_threads(saved); }
  int saved;
};

std::vector<Int8Isa> supported_isas() {
  std::vector<Int8Isa> out;
  for (Int8Isa isa : {Int8Isa::Scalar, Int8Isa::Avx2, Int8Isa::Avx512Vnni})
    if (int8_isa_supported(isa)) out.push_back(isa);
  return out;
}

struct Problem {
  int64_t m, n, k, lda, ldw;
  std::vector<uint8_t> a;
  std::vector<int8_t> w;
  std::vector<int32_t> bias;  // empty: no bias
  std::vector<float> mult;
  int32_t a_zp = 0;
};

Problem make_problem(int64_t m, int64_t n, int64_t k, int32_t a_zp, bool per_channel, bool with_bias,
                     std::mt19937& rng) {
  Problem p{m, n, k, k + static_cast<int64_t>(rng() % 5), k + static_cast<int64_t>(rng() % 3), {}, {}, {}, {}, a_zp};
  p.a.resize(m * p.lda);
  p.w.resize(n * p.ldw);
  for (auto& x : p.a) x = static_cast<uint8_t>(rng());
  for (auto& x : p.w) x = static_cast<int8_t>(rng());
  // Accumulators spread over about +-74 * 74 * sqrt(k); map that onto a few hundred output steps
  // so clamping and rounding both happen.
  const float base = 150.0f / (74.0f * 74.0f * std::sqrt(static_cast<float>(k)));
  std::uniform_real_distribution<float> spread(0.5f, 1.5f);
  p.mult.resize(per_channel ? n : 1);
  for (auto& x : p.mult) x = base * spread(rng);
  if (with_bias) {
    std::uniform_int_distribution<int32_t> b(-20000, 20000);
    p.bias.resize(n);
    for (auto& x : p.bias) x = b(rng);
  }
  return p;
}

PackedInt8Weights pack(const Problem& p, Int8Isa isa) {
  return pack_int8_weights(p.w.data(), p.n, p.k, p.ldw, p.bias.empty() ? nullptr : p.bias.data(), p.a_zp,
                           p.mult.data(), static_cast<int64_t>(p.mult.size()), isa);
}

// v before any clamp, from the reference.
std::vector<float> reference_v(const Problem& p) {
  std::vector<float> v(p.m * p.n);
  gemm_u8s8_reference_f32(p.m, p.n, p.k, p.a.data(), p.lda, p.w.data(), p.ldw,
                          p.bias.empty() ? nullptr : p.bias.data(), p.a_zp, p.mult.data(),
                          static_cast<int64_t>(p.mult.size()), Int8Output{}, v.data(), p.n);
  return v;
}

int32_t quantize_expected(float v, const Int8Output& o) {
  const double q = std::nearbyint(static_cast<double>(v)) + o.zero_point;
  return static_cast<int32_t>(std::clamp<double>(q, o.qmin, o.qmax));
}

std::vector<int32_t> naive_s32(const Problem& p) {
  std::vector<int32_t> c(p.m * p.n);
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) {
      int32_t s = 0;
      for (int64_t q = 0; q < p.k; ++q) s += int32_t{p.a[i * p.lda + q]} * int32_t{p.w[j * p.ldw + q]};
      c[i * p.n + j] = s;
    }
  return c;
}

std::string describe(const Problem& p, Int8Isa isa) {
  return std::string(int8_isa_name(isa)) + " m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) +
         " k=" + std::to_string(p.k) + " lda=" + std::to_string(p.lda) + " a_zp=" + std::to_string(p.a_zp) +
         (p.mult.size() > 1 ? " per-channel" : " per-tensor") + (p.bias.empty() ? " no-bias" : " bias");
}

// Output ranges exercised: full range, ReLU (qmin = zero point) and ReLU6-like (a narrow top).
std::vector<Int8Output> u8_outputs() {
  std::vector<Int8Output> o(3);
  o[0].zero_point = 0;
  o[1].zero_point = 131;
  o[1].qmin = 131;
  o[2].zero_point = 37;
  o[2].qmin = 37;
  o[2].qmax = 37 + 60;
  return o;
}

std::vector<Int8Output> s8_outputs() {
  std::vector<Int8Output> o(2);
  o[0].zero_point = -5;
  o[0].qmin = -128;
  o[0].qmax = 127;
  o[1].zero_point = -128;  // ReLU on a signed grid
  o[1].qmin = -128;
  o[1].qmax = 127;
  return o;
}

std::vector<Int8Output> f32_outputs() {
  std::vector<Int8Output> o(3);
  o[1].fmin = 0;  // ReLU
  o[2].fmin = 0;  // ReLU6
  o[2].fmax = 6;
  return o;
}

// Runs every output kind of one packed problem and compares with the reference element by element.
// C rows are padded (ldc > n) and the padding must stay untouched.
void check_all_outputs(const Problem& p, const PackedInt8Weights& pw, const std::vector<float>& v,
                       const std::vector<int32_t>& s32, const std::string& what) {
  const int64_t ldc = p.n + 3;
  {
    std::vector<int32_t> c(p.m * ldc, 0x5a5a5a5a);
    gemm_u8s8_s32(p.m, p.a.data(), p.lda, pw, c.data(), ldc);
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j)
        ASSERT_EQ(c[i * ldc + j], s32[i * p.n + j]) << what << " s32 at (" << i << ", " << j << ")";
      for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 0x5a5a5a5a) << what << " s32 padding written";
    }
  }
  for (const Int8Output& o : u8_outputs()) {
    std::vector<uint8_t> c(p.m * ldc, 0xab);
    gemm_u8s8_u8(p.m, p.a.data(), p.lda, pw, o, c.data(), ldc);
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j)
        ASSERT_EQ(int{c[i * ldc + j]}, quantize_expected(v[i * p.n + j], o))
            << what << " u8 zp=" << o.zero_point << " [" << o.qmin << ", " << o.qmax << "] at (" << i << ", " << j
            << "), v=" << v[i * p.n + j];
      for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 0xab) << what << " u8 padding written";
    }
  }
  for (const Int8Output& o : s8_outputs()) {
    std::vector<int8_t> c(p.m * ldc, 0x11);
    gemm_u8s8_s8(p.m, p.a.data(), p.lda, pw, o, c.data(), ldc);
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j)
        ASSERT_EQ(int{c[i * ldc + j]}, quantize_expected(v[i * p.n + j], o))
            << what << " s8 zp=" << o.zero_point << " at (" << i << ", " << j << "), v=" << v[i * p.n + j];
      for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 0x11) << what << " s8 padding written";
    }
  }
  for (const Int8Output& o : f32_outputs()) {
    std::vector<float> c(p.m * ldc, -7.25f);
    gemm_u8s8_f32(p.m, p.a.data(), p.lda, pw, o, c.data(), ldc);
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j) {
        const float want = std::min(std::max(v[i * p.n + j], o.fmin), o.fmax);
        ASSERT_EQ(c[i * ldc + j], want) << what << " f32 clamp [" << o.fmin << ", " << o.fmax << "] at (" << i
                                        << ", " << j << ")";
      }
      for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], -7.25f) << what << " f32 padding written";
    }
  }
}

TEST(Int8Gemm, IsaSelection) {
  EXPECT_TRUE(int8_isa_supported(Int8Isa::Scalar));
  EXPECT_TRUE(int8_isa_supported(best_int8_isa()));
  EXPECT_STREQ(int8_isa_name(Int8Isa::Avx512Vnni), "avx512-vnni");
  EXPECT_STREQ(int8_isa_name(Int8Isa::Avx2), "avx2");
  EXPECT_STREQ(int8_isa_name(Int8Isa::Scalar), "scalar");
  if (int8_isa_supported(Int8Isa::Avx512Vnni)) {
    EXPECT_EQ(best_int8_isa(), Int8Isa::Avx512Vnni);
  }
  std::printf("INT8 paths tested here:");
  for (Int8Isa isa : supported_isas()) std::printf(" %s", int8_isa_name(isa));
  std::printf("\n");
}

// Hand-computed half-even rounding: with a multiplier of 0.5 the values sit exactly on ties.
TEST(Int8Gemm, RoundsHalfToEven) {
  const std::vector<uint8_t> a = {1, 3, 5, 7, 0, 2};  // m = 6, k = 1
  const std::vector<int8_t> w = {1, -1};               // n = 2
  const float mult = 0.5f;
  // channel 0: acc = a -> v = 0.5, 1.5, 2.5, 3.5, 0, 1 -> 0, 2, 2, 4, 0, 1 (+ zp 10)
  // channel 1: acc = -a -> -0.5, -1.5, -2.5, -3.5, 0, -1 -> 0, -2, -2, -4, 0, -1 (+ zp 10)
  const std::vector<int> want = {10, 10, 12, 8, 12, 8, 14, 6, 10, 10, 11, 9};
  Int8Output o;
  o.zero_point = 10;
  for (Int8Isa isa : supported_isas()) {
    PackedInt8Weights pw = pack_int8_weights(w.data(), 2, 1, 1, nullptr, 0, &mult, 1, isa);
    std::vector<uint8_t> c(12);
    gemm_u8s8_u8(6, a.data(), 1, pw, o, c.data(), 2);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(int{c[i]}, want[i]) << int8_isa_name(isa) << " element " << i;
  }
}

// Bias and activation zero point: hand-computed packed bias and outputs.
TEST(Int8Gemm, PackedBiasFoldsZeroPoint) {
  const std::vector<int8_t> w = {1, 2, 3, -1, -2, -3};  // n = 2, k = 3
  const std::vector<int32_t> bias = {100, -100};
  const float mult = 1.0f;
  const std::vector<uint8_t> a = {10, 20, 30};
  for (Int8Isa isa : supported_isas()) {
    PackedInt8Weights pw = pack_int8_weights(w.data(), 2, 3, 3, bias.data(), 5, &mult, 1, isa);
    EXPECT_EQ(pw.row_sums, (std::vector<int32_t>{6, -6}));
    EXPECT_EQ(pw.bias, (std::vector<int32_t>{100 - 30, -100 + 30}));
    std::vector<float> c(2);
    gemm_u8s8_f32(1, a.data(), 3, pw, Int8Output{}, c.data(), 2);
    // (a - 5) . w + bias = (5*1 + 15*2 + 25*3) + 100 = 210; and -110 - 100 = -210
    EXPECT_EQ(c[0], 210.0f) << int8_isa_name(isa);
    EXPECT_EQ(c[1], -210.0f) << int8_isa_name(isa);
  }
}

TEST(Int8Gemm, EveryPathMatchesTheReferenceOnOddShapes) {
  const std::vector<int64_t> sizes = {1, 3, 5, 15, 16, 17, 31, 33, 64, 100, 257};
  std::mt19937 rng(1234);
  std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1}, {257, 257, 257}, {3, 100, 33}, {17, 31, 5}};
  for (int i = 0; i < 40; ++i)
    shapes.push_back({sizes[rng() % sizes.size()], sizes[rng() % sizes.size()], sizes[rng() % sizes.size()]});
  int case_no = 0;
  for (const auto& s : shapes) {
    const int32_t zps[] = {0, 128, 37};
    const int32_t a_zp = zps[case_no % 3];
    const bool per_channel = case_no % 2 == 0, with_bias = case_no % 5 != 4;
    ++case_no;
    Problem p = make_problem(s[0], s[1], s[2], a_zp, per_channel, with_bias, rng);
    const std::vector<float> v = reference_v(p);
    const std::vector<int32_t> s32 = naive_s32(p);
    for (Int8Isa isa : supported_isas()) {
      PackedInt8Weights pw = pack(p, isa);
      ASSERT_NO_FATAL_FAILURE(check_all_outputs(p, pw, v, s32, describe(p, isa)));
    }
  }
}

// all 255 x all -128 with k = 4096: |acc| = 133693440, far beyond int16, still exact in int32.
TEST(Int8Gemm, ExtremeValuesDoNotOverflow) {
  const int64_t m = 7, n = 33, k = 4096;
  Problem p{m, n, k, k, k, std::vector<uint8_t>(m * k, 255), std::vector<int8_t>(n * k, -128), {}, {}, 255};
  p.mult = {1.0f / 1024.0f};
  p.bias.assign(n, 1000);
  const std::vector<float> v = reference_v(p);
  const std::vector<int32_t> s32 = naive_s32(p);
  EXPECT_EQ(s32[0], -133693440);
  // (255 - 255) * -128 * 4096 + 1000: the zero point cancels the huge accumulator exactly.
  EXPECT_EQ(v[0], 1000.0f / 1024.0f);
  for (Int8Isa isa : supported_isas()) {
    PackedInt8Weights pw = pack(p, isa);
    ASSERT_NO_FATAL_FAILURE(check_all_outputs(p, pw, v, s32, describe(p, isa)));
  }
  p.a_zp = 0;  // without the zero point v is hugely negative: every quantized output clamps to qmin
  const std::vector<float> v0 = reference_v(p);
  for (Int8Isa isa : supported_isas()) {
    PackedInt8Weights pw = pack(p, isa);
    ASSERT_NO_FATAL_FAILURE(check_all_outputs(p, pw, v0, s32, describe(p, isa)));
  }
}

TEST(Int8Gemm, ThreadedEqualsSingleThreaded) {
  std::mt19937 rng(99);
  // large M (row split), tiny M with wide N (column split), and work just above the threshold
  for (auto s : std::vector<std::array<int64_t, 3>>{{300, 200, 260}, {3, 1024, 1024}, {61, 130, 300}}) {
    Problem p = make_problem(s[0], s[1], s[2], 37, true, true, rng);
    for (Int8Isa isa : supported_isas()) {
      if (isa == Int8Isa::Scalar && s[1] > 500) continue;  // keep the test fast
      PackedInt8Weights pw = pack(p, isa);
      Int8Output o;
      o.zero_point = 20;
      std::vector<uint8_t> c1(p.m * p.n), c2(p.m * p.n);
      std::vector<int32_t> s1(p.m * p.n), s2(p.m * p.n);
      {
        ThreadCount tc(1);
        gemm_u8s8_u8(p.m, p.a.data(), p.lda, pw, o, c1.data(), p.n);
        gemm_u8s8_s32(p.m, p.a.data(), p.lda, pw, s1.data(), p.n);
      }
      {
        ThreadCount tc(2);
        gemm_u8s8_u8(p.m, p.a.data(), p.lda, pw, o, c2.data(), p.n);
        gemm_u8s8_s32(p.m, p.a.data(), p.lda, pw, s2.data(), p.n);
      }
      EXPECT_EQ(c1, c2) << describe(p, isa);
      EXPECT_EQ(s1, s2) << describe(p, isa);
      EXPECT_EQ(s1, naive_s32(p)) << describe(p, isa);
    }
  }
}

// The packed layout records its offset, so a copy (whose buffer lands elsewhere) still works.
TEST(Int8Gemm, CopiedWeightsStillWork) {
  std::mt19937 rng(5);
  Problem p = make_problem(9, 40, 23, 128, true, true, rng);
  const std::vector<int32_t> s32 = naive_s32(p);
  for (Int8Isa isa : supported_isas()) {
    std::vector<PackedInt8Weights> copies;
    PackedInt8Weights pw = pack(p, isa);
    for (int i = 0; i < 4; ++i) copies.push_back(pw);
    for (const auto& c : copies) {
      std::vector<int32_t> out(p.m * p.n);
      gemm_u8s8_s32(p.m, p.a.data(), p.lda, c, out.data(), p.n);
      EXPECT_EQ(out, s32) << int8_isa_name(isa);
    }
  }
}

TEST(Int8Gemm, ErrorsAreClear) {
  const std::vector<int8_t> w(4 * 8, 1);
  const std::vector<float> mult(4, 1.0f);
  for (Int8Isa isa : {Int8Isa::Avx2, Int8Isa::Avx512Vnni})
    if (!int8_isa_supported(isa))
      expect_error([&] { pack_int8_weights(w.data(), 4, 8, 8, nullptr, 0, mult.data(), 1, isa); },
                   {std::string("ISA ") + int8_isa_name(isa) + " is not supported"});
  expect_error([&] { pack_int8_weights(w.data(), 0, 8, 8, nullptr, 0, mult.data(), 1); }, {"n=0 k=8"});
  expect_error([&] { pack_int8_weights(w.data(), 4, 8, 7, nullptr, 0, mult.data(), 1); }, {"ldw=7"});
  expect_error([&] { pack_int8_weights(w.data(), 4, 8, 8, nullptr, 0, mult.data(), 3); },
               {"3 multipliers for 4 output channels"});
  expect_error([&] { pack_int8_weights(w.data(), 4, 8, 8, nullptr, 300, mult.data(), 1); }, {"zero point 300"});
  expect_error([&] { pack_int8_weights(w.data(), 4, 100000, 100000, nullptr, 0, mult.data(), 1); },
               {"could overflow"});

  PackedInt8Weights pw = pack_int8_weights(w.data(), 4, 8, 8, nullptr, 0, mult.data(), 4);
  std::vector<uint8_t> a(2 * 8, 1), c8(2 * 4);
  std::vector<int32_t> c32(2 * 4);
  expect_error([&] { gemm_u8s8_s32(2, a.data(), 7, pw, c32.data(), 4); }, {"lda=7 is smaller than k=8"});
  expect_error([&] { gemm_u8s8_s32(2, a.data(), 8, pw, c32.data(), 3); }, {"ldc=3 is smaller than n=4"});
  expect_error([&] { gemm_u8s8_s32(2, a.data(), 8, PackedInt8Weights{}, c32.data(), 4); }, {"not packed"});
  Int8Output bad;
  bad.qmax = 300;
  expect_error([&] { gemm_u8s8_u8(2, a.data(), 8, pw, bad, c8.data(), 4); }, {"within [0, 255]"});
  Int8Output s8;  // default qmin/qmax are uint8's: 255 is outside int8
  std::vector<int8_t> cs8(2 * 4);
  expect_error([&] { gemm_u8s8_s8(2, a.data(), 8, pw, s8, cs8.data(), 4); }, {"within [-128, 127]"});
  expect_error([&] { gemm_f32_s8w(2, 4, 8, nullptr, 8, w.data(), 8, mult.data(), 2, nullptr, nullptr, 4); },
               {"2 scales for n=4"});
}

// gemm_f32_s8w against dequantizing W first and multiplying in double.
TEST(Int8Gemm, WeightOnlyMatchesDequantizeThenMultiply) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  struct S {
    int64_t m, n, k;
    bool per_channel, bias;
  };
  for (const S& s : std::vector<S>{{1, 1, 1, false, false},
                                   {3, 17, 33, true, true},
                                   {5, 300, 31, true, false},
                                   {64, 100, 257, false, true},
                                   {257, 600, 64, true, true},
                                   {2, 1024, 1024, true, true}}) {
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      const int64_t lda = s.k + 2, ldw = s.k + 1, ldc = s.n + 3;
      std::vector<float> a(s.m * lda), scale(s.per_channel ? s.n : 1), bias(s.n), c(s.m * ldc, 42.0f);
      std::vector<int8_t> w(s.n * ldw);
      for (auto& x : a) x = nd(rng);
      for (auto& x : w) x = static_cast<int8_t>(rng());
      for (auto& x : scale) x = 0.01f * (1.0f + std::abs(nd(rng)));
      for (auto& x : bias) x = nd(rng);
      gemm_f32_s8w(s.m, s.n, s.k, a.data(), lda, w.data(), ldw, scale.data(), static_cast<int64_t>(scale.size()),
                   s.bias ? bias.data() : nullptr, c.data(), ldc);
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
          const double sc = scale[s.per_channel ? j : 0];
          double want = s.bias ? bias[j] : 0.0, mag = std::abs(want);
          for (int64_t q = 0; q < s.k; ++q) {
            const double t = static_cast<double>(a[i * lda + q]) * (w[j * ldw + q] * sc);
            want += t;
            mag += std::abs(t);
          }
          ASSERT_NEAR(c[i * ldc + j], want, 1e-5 * mag + 1e-6)
              << "m=" << s.m << " n=" << s.n << " k=" << s.k << " threads=" << threads << " at (" << i << ", " << j
              << ")";
        }
        for (int64_t j = s.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], 42.0f) << "padding written";
      }
    }
  }
}

}  // namespace
