// INT8 element-wise, layout and pooling kernels (core/cpu/int8_conv.h) against scalar references
// written from the formulas, plus hand-computed rounding ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu/int8_conv.h"
#include "core/error.h"
#include "core/parallel.h"

using namespace qslim;
using namespace qslim::cpu;

namespace {

uint8_t clamp_q(double r, int32_t lo, int32_t hi) { return static_cast<uint8_t>(std::clamp<double>(r, lo, hi)); }

std::vector<uint8_t> random_u8(size_t n, std::mt19937& rng, int lo = 0, int hi = 255) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(d(rng));
  return v;
}

template <typename T>
::testing::AssertionResult same(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << +got[i] << ", want " << +want[i];
  return ::testing::AssertionSuccess();
}

struct Shape4 {
  int64_t n, c, h, w;
};
const Shape4 kShapes[] = {{1, 1, 1, 1}, {3, 3, 5, 7}, {1, 17, 28, 28}, {3, 64, 5, 7}, {1, 1, 28, 28}, {2, 3, 1, 1}};

struct Pool {
  int64_t n, h, w, c, kh, kw, sh, sw, ph, pw;
  int64_t oh() const { return (h + 2 * ph - kh) / sh + 1; }
  int64_t ow() const { return (w + 2 * pw - kw) / sw + 1; }
};
const Pool kPools[] = {{1, 5, 7, 3, 3, 3, 2, 2, 1, 1}, {3, 28, 28, 17, 2, 2, 2, 2, 0, 0},
                       {1, 1, 1, 64, 1, 1, 1, 1, 0, 0}, {3, 5, 7, 1, 3, 3, 1, 1, 1, 1},
                       {1, 14, 14, 96, 3, 3, 2, 2, 1, 1}, {2, 6, 6, 130, 5, 3, 1, 2, 2, 1}};

// Visits the valid pixels of output (n, oh, ow)'s window: f(offset of the pixel's channel 0).
template <typename F>
void window(const Pool& p, int64_t n, int64_t oh, int64_t ow, const F& f) {
  for (int64_t i = 0; i < p.kh; ++i)
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t ih = oh * p.sh - p.ph + i, iw = ow * p.sw - p.pw + j;
      if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w) f(((n * p.h + ih) * p.w + iw) * p.c);
    }
}

}  // namespace

TEST(Int8Eltwise, QuantizeMatchesFormulaAndTransposes) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (const Shape4& s : kShapes) {
    for (int32_t zp : {0, 128, 37}) {
      const int64_t hw = s.h * s.w, total = s.n * s.c * hw;
      std::vector<float> x(total);
      for (auto& v : x) v = nd(rng);
      const float scale = 0.03f;
      const int32_t qmin = zp == 37 ? 37 : 0, qmax = zp == 128 ? 200 : 255;  // ReLU / clipped variants
      std::vector<uint8_t> y(total), want(total);
      quantize_nchw_to_nhwc_u8(x.data(), s.n, s.c, s.h, s.w, scale, zp, qmin, qmax, y.data());
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t p = 0; p < hw; ++p)
            want[(n * hw + p) * s.c + c] = clamp_q(std::nearbyint(x[(n * s.c + c) * hw + p] / scale) + zp, qmin, qmax);
      ASSERT_TRUE(same(y, want)) << "shape [" << s.n << ", " << s.c << ", " << s.h << ", " << s.w << "] zp " << zp;
    }
  }
}

TEST(Int8Eltwise, QuantizeTiesRoundToEven) {
  // scale 0.5: x / s is exact, so these are true ties. 17 values exercise the vector and tail paths.
  const std::vector<float> x{0.25f, 0.75f, 1.25f, -0.25f, -0.75f, 2.25f, 2.75f, 0.0f, 300.0f, -100.0f,
                             0.25f, 0.75f, 1.25f, -0.25f, -0.75f, 2.25f, 2.75f};
  const std::vector<uint8_t> want{10, 12, 12, 10, 8, 14, 16, 10, 255, 0, 10, 12, 12, 10, 8, 14, 16};
  std::vector<uint8_t> y(x.size());
  quantize_nchw_to_nhwc_u8(x.data(), 1, 1, 1, static_cast<int64_t>(x.size()), 0.5f, 10, 0, 255, y.data());
  EXPECT_TRUE(same(y, want));
}

TEST(Int8Eltwise, QuantizeNearTiesDividesBySteps) {
  // Values at and next to (k + 1/2) s for a step that is not a power of two: x / s must be the
  // correctly rounded quotient (x * (1 / s) differs on some of them).
  for (float scale : {0.03f, 0.0173f, 0.11f}) {
    std::vector<float> x;
    for (int k = -140; k < 140; ++k) {
      const float t = static_cast<float>((k + 0.5) * scale);
      x.insert(x.end(), {std::nextafter(t, -1e9f), t, std::nextafter(t, 1e9f)});
    }
    const int64_t count = static_cast<int64_t>(x.size());
    std::vector<uint8_t> y(count), want(count);
    quantize_nchw_to_nhwc_u8(x.data(), 1, 1, 1, count, scale, 128, 0, 255, y.data());
    for (int64_t i = 0; i < count; ++i) want[i] = clamp_q(std::nearbyint(x[i] / scale) + 128, 0, 255);
    ASSERT_TRUE(same(y, want)) << "scale " << scale;
  }
}

TEST(Int8Eltwise, DequantizeMatchesFormulaAndRoundTrips) {
  std::mt19937 rng(2);
  for (const Shape4& s : kShapes) {
    const int64_t hw = s.h * s.w, total = s.n * s.c * hw;
    const std::vector<uint8_t> q = random_u8(total, rng);
    const float scale = 0.0371f;
    const int32_t zp = 37;
    std::vector<float> x(total), want(total);
    dequantize_nhwc_to_nchw_u8(q.data(), s.n, s.c, s.h, s.w, scale, zp, x.data());
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t p = 0; p < hw; ++p)
          want[(n * s.c + c) * hw + p] = scale * static_cast<float>(q[(n * hw + p) * s.c + c] - zp);
    ASSERT_TRUE(same(x, want));
    std::vector<uint8_t> back(total);
    quantize_nchw_to_nhwc_u8(x.data(), s.n, s.c, s.h, s.w, scale, zp, 0, 255, back.data());
    ASSERT_TRUE(same(back, q)) << "quantize(dequantize(q)) must give q back";
  }
  // dequantize(quantize(x)) is within half a step of x inside the grid
  std::vector<float> x(1000);
  std::uniform_real_distribution<float> u(-1.0f, 8.0f);
  for (auto& v : x) v = u(rng);
  std::vector<uint8_t> q(x.size());
  std::vector<float> back(x.size());
  quantize_nchw_to_nhwc_u8(x.data(), 1, 1, 10, 100, 0.04f, 30, 0, 255, q.data());
  dequantize_nhwc_to_nchw_u8(q.data(), 1, 1, 10, 100, 0.04f, 30, back.data());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::abs(back[i] - x[i]), 0.02f * 1.0001f) << x[i];
}

TEST(Int8Eltwise, AddMatchesFormulaWithinOneStepOfExact) {
  std::mt19937 rng(3);
  for (int64_t count : {1, 15, 16, 17, 1000, 100003}) {
    for (int32_t zy : {0, 128, 37}) {
      const std::vector<uint8_t> a = random_u8(count, rng), b = random_u8(count, rng);
      const float sa = 0.02f, sb = 0.035f, sy = 0.05f;
      const int32_t za = 128, zb = 37, qmin = zy == 37 ? 37 : 0, qmax = zy == 0 ? 120 : 255;
      std::vector<uint8_t> y(count), want(count);
      int8_add_u8(a.data(), sa, za, b.data(), sb, zb, count, sy, zy, qmin, qmax, y.data());
      const float ma = sa / sy, mb = sb / sy;
      for (int64_t i = 0; i < count; ++i) {
        const float v = std::fma(ma, static_cast<float>(a[i] - za), mb * static_cast<float>(b[i] - zb));
        want[i] = clamp_q(std::nearbyint(v) + zy, qmin, qmax);
        const double exact = (sa * (a[i] - za) + double(sb) * (b[i] - zb)) / sy + zy;
        ASSERT_LE(std::abs(std::clamp<double>(exact, qmin, qmax) - want[i]), 0.5 + 1e-3);
      }
      ASSERT_TRUE(same(y, want)) << "count " << count << " zy " << zy;
    }
  }
}

TEST(Int8Eltwise, AddTiesByHand) {
  // s_a = s_b = 1, s_y = 2: y = nearbyint((a + b) / 2) + z_y, ties to even.
  const std::vector<uint8_t> a{1, 3, 5, 2, 0, 7, 1, 3, 5, 2, 0, 7, 1, 3, 5, 2, 0};
  const std::vector<uint8_t> b{0, 0, 0, 3, 1, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 3, 1};
  const std::vector<uint8_t> want{10, 12, 12, 12, 10, 14, 10, 12, 12, 12, 10, 14, 10, 12, 12, 12, 10};
  std::vector<uint8_t> y(a.size());
  int8_add_u8(a.data(), 1.0f, 0, b.data(), 1.0f, 0, static_cast<int64_t>(a.size()), 2.0f, 10, 0, 255, y.data());
  EXPECT_TRUE(same(y, want));
  // ReLU fused through qmin = z_y: negative sums clamp to the zero point.
  const std::vector<uint8_t> c{0, 0, 0, 0}, d{200, 100, 128, 140};
  std::vector<uint8_t> r(4);
  int8_add_u8(c.data(), 1.0f, 0, d.data(), 1.0f, 128, 4, 1.0f, 5, 5, 255, r.data());
  EXPECT_TRUE(same(r, std::vector<uint8_t>{77, 5, 5, 17}));
}

TEST(Int8Eltwise, RequantizeIntoConcatSlice) {
  std::mt19937 rng(4);
  const int64_t pixels = 37, dst_c = 50;
  for (int64_t src_c : {1, 17, 33}) {
    for (bool same_params : {false, true}) {
      const int64_t off = dst_c - src_c - 1;
      const std::vector<uint8_t> src = random_u8(pixels * src_c, rng);
      std::vector<uint8_t> dst = random_u8(pixels * dst_c, rng), want = dst;
      const float ss = 0.1f, sd = same_params ? 0.1f : 0.07f;
      const int32_t zs = 37, zd = same_params ? 37 : 128;
      int8_requantize_into_u8(src.data(), pixels, src_c, ss, zs, dst.data(), dst_c, off, sd, zd);
      const float m = ss / sd;
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < src_c; ++c)
          want[p * dst_c + off + c] = clamp_q(std::nearbyint(m * static_cast<float>(src[p * src_c + c] - zs)) + zd, 0, 255);
      ASSERT_TRUE(same(dst, want)) << "src_c " << src_c << " same " << same_params;  // other columns untouched
    }
  }
  std::vector<uint8_t> s(4), d(4);
  EXPECT_THROW(int8_requantize_into_u8(s.data(), 1, 3, 1.0f, 0, d.data(), 4, 2, 1.0f, 0), Error);
}

TEST(Int8Eltwise, LookupHardswishTable) {
  // hardswish on the grid of x = s_x (q - z_x), requantized to (s_y, z_y)
  const float sx = 0.05f, sy = 0.03f;
  const int32_t zx = 128, zy = 20;
  uint8_t table[256];
  for (int q = 0; q < 256; ++q) {
    const double x = sx * (q - zx), hs = x * std::clamp(x + 3.0, 0.0, 6.0) / 6.0;
    table[q] = clamp_q(std::nearbyint(hs / sy) + zy, 0, 255);
  }
  EXPECT_EQ(table[zx], zy);         // hardswish(0) = 0
  EXPECT_EQ(table[zx - 60], zy);    // x = -3
  std::mt19937 rng(5);
  for (int64_t count : {256, 1, 63, 64, 1000037}) {
    std::vector<uint8_t> x = random_u8(count, rng);
    if (count == 256)
      for (int i = 0; i < 256; ++i) x[i] = static_cast<uint8_t>(i);
    std::vector<uint8_t> y(count), want(count);
    for (int64_t i = 0; i < count; ++i) want[i] = table[x[i]];
    int8_lookup_u8(x.data(), count, table, y.data());
    ASSERT_TRUE(same(y, want)) << count;
  }
  // misaligned start and length
  std::vector<uint8_t> x = random_u8(300, rng), y(300, 0);
  int8_lookup_u8(x.data() + 3, 200, table, y.data() + 5);
  for (int64_t i = 0; i < 200; ++i) ASSERT_EQ(y[5 + i], table[x[3 + i]]);
  EXPECT_EQ(y[4], 0);
  EXPECT_EQ(y[205], 0);
}

TEST(Int8Pool, MaxPoolMatchesReference) {
  std::mt19937 rng(6);
  for (const Pool& p : kPools) {
    const std::vector<uint8_t> x = random_u8(p.n * p.h * p.w * p.c, rng);
    std::vector<uint8_t> y(p.n * p.oh() * p.ow() * p.c), want(y.size());
    int8_maxpool_u8(x.data(), p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, y.data());
    for (int64_t n = 0; n < p.n; ++n)
      for (int64_t oh = 0; oh < p.oh(); ++oh)
        for (int64_t ow = 0; ow < p.ow(); ++ow)
          for (int64_t c = 0; c < p.c; ++c) {
            int best = -1;
            window(p, n, oh, ow, [&](int64_t off) { best = std::max<int>(best, x[off + c]); });
            want[((n * p.oh() + oh) * p.ow() + ow) * p.c + c] = static_cast<uint8_t>(best);
          }
    ASSERT_TRUE(same(y, want)) << "pool " << p.h << "x" << p.w << "x" << p.c << " k" << p.kh << "x" << p.kw;
  }
}

TEST(Int8Pool, MaxPoolPaddingNeverWins) {
  // Whatever byte padding might be read as (0, 255 or a zero point), the border outputs must be
  // the real pixels' maximum.
  for (uint8_t v : {0, 3, 254}) {
    const Pool p{1, 4, 4, 19, 3, 3, 1, 1, 1, 1};
    std::vector<uint8_t> x(p.h * p.w * p.c, v), y(p.oh() * p.ow() * p.c);
    int8_maxpool_u8(x.data(), 1, p.h, p.w, p.c, 3, 3, 1, 1, 1, 1, y.data());
    for (uint8_t q : y) ASSERT_EQ(q, v);
  }
  std::vector<uint8_t> x(16), y(16);
  EXPECT_THROW(int8_maxpool_u8(x.data(), 1, 4, 4, 1, 2, 2, 1, 1, 2, 0, y.data()), Error);  // pad >= kernel
}

TEST(Int8Pool, AvgPoolMatchesReference) {
  std::mt19937 rng(7);
  for (const Pool& p : kPools) {
    for (bool same_params : {true, false}) {
      const std::vector<uint8_t> x = random_u8(p.n * p.h * p.w * p.c, rng);
      const float sx = 0.1f, sy = same_params ? 0.1f : 0.13f;
      const int32_t zx = 37, zy = same_params ? 37 : 128;
      std::vector<uint8_t> y(p.n * p.oh() * p.ow() * p.c), want(y.size());
      int8_avgpool_u8(x.data(), p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, sx, zx, sy, zy, y.data());
      for (int64_t n = 0; n < p.n; ++n)
        for (int64_t oh = 0; oh < p.oh(); ++oh)
          for (int64_t ow = 0; ow < p.ow(); ++ow)
            for (int64_t c = 0; c < p.c; ++c) {
              int32_t sum = 0, count = 0;
              window(p, n, oh, ow, [&](int64_t off) {
                sum += x[off + c];
                ++count;
              });
              const float v = (static_cast<float>(sum - count * zx) * (sx / sy)) / static_cast<float>(count);
              want[((n * p.oh() + oh) * p.ow() + ow) * p.c + c] = clamp_q(std::nearbyint(v) + zy, 0, 255);
            }
      ASSERT_TRUE(same(y, want)) << "pool " << p.h << "x" << p.w << "x" << p.c << " k" << p.kh << "x" << p.kw;
    }
  }
}

TEST(Int8Pool, AvgPoolTiesAndPaddingByHand) {
  // 2x2 windows, same step and zero point: averages 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 0.25 -> 0.
  // 17 channels so the vector body and the masked tail both see the ties.
  const int64_t C = 17;
  const uint8_t vals[4][4] = {{1, 2, 1, 2}, {2, 3, 2, 3}, {3, 4, 3, 4}, {0, 0, 0, 1}};
  const uint8_t want[4] = {2, 2, 4, 0};
  std::vector<uint8_t> x(2 * 4 * C), y(2 * C);  // image [2, 4, C]: two 2x2 windows
  for (int win = 0; win < 2; ++win)
    for (int t = 0; t < 4; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const int pattern = static_cast<int>((win * 2 + c) % 4);
        x[((t / 2) * 4 + win * 2 + t % 2) * C + c] = vals[pattern][t];
      }
  int8_avgpool_u8(x.data(), 1, 2, 4, C, 2, 2, 2, 2, 0, 0, 1.0f, 0, 1.0f, 0, y.data());
  for (int win = 0; win < 2; ++win)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(y[win * C + c], want[(win * 2 + c) % 4]) << win << " " << c;
  // count_include_pad = false: the corner window of a 3x3 pad-1 pool averages its 4 real pixels.
  std::vector<uint8_t> img{10, 20, 90, 30, 40, 90, 90, 90, 90}, out(9);
  int8_avgpool_u8(img.data(), 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1.0f, 0, 1.0f, 0, out.data());
  EXPECT_EQ(out[0], 25);  // (10 + 20 + 30 + 40) / 4
}

TEST(Int8Pool, GlobalAvgPool) {
  std::mt19937 rng(8);
  for (int64_t c : {1, 3, 17, 64, 130}) {
    for (int64_t hw : {1, 35, 784}) {
      const int64_t n = 3;
      const std::vector<uint8_t> x = random_u8(n * hw * c, rng);
      const float sx = 0.02f, sy = 0.01f;
      const int32_t zx = 37, zy = 128;
      std::vector<float> yf(n * c), wf(n * c);
      std::vector<uint8_t> yq(n * c), wq(n * c);
      int8_global_avgpool_f32(x.data(), n, 1, hw, c, sx, zx, yf.data());
      int8_global_avgpool_u8(x.data(), n, hw, 1, c, sx, zx, sy, zy, yq.data());
      for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch) {
          int32_t sum = 0;
          for (int64_t p = 0; p < hw; ++p) sum += x[(b * hw + p) * c + ch];
          const int32_t acc = sum - static_cast<int32_t>(hw) * zx;
          wf[b * c + ch] = (static_cast<float>(acc) * sx) / static_cast<float>(hw);
          wq[b * c + ch] = clamp_q(std::nearbyint((static_cast<float>(acc) * (sx / sy)) / static_cast<float>(hw)) + zy, 0, 255);
          ASSERT_NEAR(wf[b * c + ch], sx * (static_cast<double>(sum) / hw - zx), 1e-5);
        }
      ASSERT_TRUE(same(yf, wf)) << "c " << c << " hw " << hw;
      ASSERT_TRUE(same(yq, wq)) << "c " << c << " hw " << hw;
    }
  }
}

TEST(Int8Eltwise, ThreadedEqualsSingleThreaded) {
  std::mt19937 rng(9);
  const int saved = num_threads();
  const int64_t n = 8, c = 64, h = 28, w = 28, count = n * c * h * w;
  const std::vector<uint8_t> a = random_u8(count, rng), b = random_u8(count, rng);
  std::vector<float> xf(count);
  for (int64_t i = 0; i < count; ++i) xf[i] = 0.01f * static_cast<float>(a[i]) - 1.0f;
  uint8_t table[256];
  for (int i = 0; i < 256; ++i) table[i] = static_cast<uint8_t>(255 - i);
  auto run_all = [&]() {
    std::vector<uint8_t> out;
    std::vector<uint8_t> t(count);
    quantize_nchw_to_nhwc_u8(xf.data(), n, c, h, w, 0.01f, 100, 0, 255, t.data());
    out.insert(out.end(), t.begin(), t.end());
    int8_add_u8(a.data(), 0.1f, 10, b.data(), 0.2f, 20, count, 0.25f, 30, 30, 255, t.data());
    out.insert(out.end(), t.begin(), t.end());
    int8_lookup_u8(a.data(), count, table, t.data());
    out.insert(out.end(), t.begin(), t.end());
    std::vector<uint8_t> p(n * 14 * 14 * c);
    int8_maxpool_u8(a.data(), n, h, w, c, 3, 3, 2, 2, 1, 1, p.data());
    out.insert(out.end(), p.begin(), p.end());
    int8_avgpool_u8(a.data(), n, h, w, c, 3, 3, 2, 2, 1, 1, 0.1f, 3, 0.2f, 7, p.data());
    out.insert(out.end(), p.begin(), p.end());
    std::vector<float> f(count);
    dequantize_nhwc_to_nchw_u8(a.data(), n, c, h, w, 0.5f, 9, f.data());
    for (int64_t i = 0; i < count; i += 97) out.push_back(static_cast<uint8_t>(static_cast<int>(f[i]) & 255));
    return out;
  };
  set_num_threads(1);
  const std::vector<uint8_t> one = run_all();
  set_num_threads(4);
  const std::vector<uint8_t> four = run_all();
  set_num_threads(saved);
  EXPECT_TRUE(same(one, four));
}

TEST(Int8Eltwise, RejectsBadArguments) {
  std::vector<float> x(4);
  std::vector<uint8_t> q(4);
  EXPECT_THROW(quantize_nchw_to_nhwc_u8(x.data(), 1, 1, 2, 2, 0.0f, 0, 0, 255, q.data()), Error);
  EXPECT_THROW(quantize_nchw_to_nhwc_u8(x.data(), 1, 1, 2, 2, 1.0f, 0, 10, 5, q.data()), Error);
  EXPECT_THROW(int8_add_u8(q.data(), 1.0f, 0, q.data(), -1.0f, 0, 4, 1.0f, 0, 0, 255, q.data()), Error);
  EXPECT_THROW(int8_avgpool_u8(q.data(), 1, 2, 2, 1, 3, 3, 1, 1, 0, 0, 1.0f, 0, 1.0f, 0, q.data()), Error);
}
