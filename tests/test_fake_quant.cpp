// Quantization ops of quant/fake_quant.h and the grid conventions of quant/quant_grid.h, against
// hand-computed values, naive scalar references and finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/parallel.h"
#include "quant/fake_quant.h"
#include "quant/quant_grid.h"
#include "quant/range_stats.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

Tensor vec(std::initializer_list<double> v, DType dt = DType::F32) {
  return tensor(v, {static_cast<int64_t>(v.size())}, dt);
}

Tensor fq(const Tensor& x, double s, int bits, GridKind kind, Rounding r = Rounding::HalfEven, int z = 0,
          SteMode ste = SteMode::Clipped) {
  Tensor zp = full({1}, z, DType::I32);
  return fake_quantize(x, full({1}, s), zp, -1, QuantGrid(bits, kind), r, ste);
}

// Gradient of sum(op(x) * dy) with respect to x.
std::vector<double> input_grad(const std::function<Tensor(const Tensor&)>& op, Tensor x, const Tensor& dy) {
  x.set_requires_grad(true);
  op(x).backward(dy);
  return x.grad().to_vector<double>();
}

std::vector<double> ones_vec(size_t n) { return std::vector<double>(n, 1.0); }

}  // namespace

// ---- grid ----

TEST(QuantGrid, RangesPerKindAndBits) {
  EXPECT_EQ(QuantGrid(8, GridKind::Signed).qmin(), -128);
  EXPECT_EQ(QuantGrid(8, GridKind::Signed).qmax(), 127);
  EXPECT_EQ(QuantGrid(8, GridKind::Narrow).qmin(), -127);
  EXPECT_EQ(QuantGrid(8, GridKind::Narrow).qmax(), 127);
  EXPECT_EQ(QuantGrid(8, GridKind::Unsigned).qmin(), 0);
  EXPECT_EQ(QuantGrid(8, GridKind::Unsigned).qmax(), 255);
  EXPECT_EQ(QuantGrid(2, GridKind::Signed).qmin(), -2);
  EXPECT_EQ(QuantGrid(2, GridKind::Signed).qmax(), 1);
  EXPECT_EQ(QuantGrid(2, GridKind::Narrow).qmin(), -1);
  EXPECT_EQ(QuantGrid(4, GridKind::Unsigned).qmax(), 15);
  EXPECT_EQ(QuantGrid(16, GridKind::Signed).qmin(), -32768);
  EXPECT_EQ(QuantGrid(16, GridKind::Unsigned).qmax(), 65535);
  EXPECT_EQ(QuantGrid(8, GridKind::Signed).storage_dtype(), DType::I8);
  EXPECT_EQ(QuantGrid(8, GridKind::Unsigned).storage_dtype(), DType::U8);
  EXPECT_EQ(QuantGrid(9, GridKind::Narrow).storage_dtype(), DType::I16);
  EXPECT_EQ(QuantGrid(16, GridKind::Signed).storage_dtype(), DType::I16);
  EXPECT_EQ(QuantGrid(16, GridKind::Unsigned).storage_dtype(), DType::I32);
  EXPECT_EQ(QuantGrid(4, GridKind::Narrow).to_string(), "int4 narrow [-7, 7]");
}

TEST(QuantGrid, BitsOutOfRangeAreErrors) {
  for (int bits : {-1, 0, 1, 17, 32}) {
    std::string e = error_of([&] { QuantGrid g(bits, GridKind::Signed); });
    EXPECT_NE(e.find("bits must be in 2..16, got " + std::to_string(bits)), std::string::npos) << e;
  }
  EXPECT_NE(error_of([] { check_bits(1, "abs_max"); }).find("abs_max: bits must be in 2..16, got 1"),
            std::string::npos);
}

TEST(QuantGrid, ThresholdScaleConversions) {
  EXPECT_DOUBLE_EQ(threshold_to_scale(12.7, 8), 0.1);
  EXPECT_DOUBLE_EQ(scale_to_threshold(0.1, 8), 12.7);
  EXPECT_DOUBLE_EQ(threshold_to_scale(7.0, 4), 1.0);
  EXPECT_DOUBLE_EQ(threshold_to_scale(1.0, 2), 1.0);
  EXPECT_DOUBLE_EQ(threshold_to_scale(12.7, QuantGrid(8, GridKind::Narrow)), 0.1);
  EXPECT_DOUBLE_EQ(threshold_to_scale(12.7, QuantGrid(8, GridKind::Signed)), 0.1);
  EXPECT_DOUBLE_EQ(threshold_to_scale(25.5, QuantGrid(8, GridKind::Unsigned)), 0.1);
  EXPECT_DOUBLE_EQ(scale_to_threshold(0.1, QuantGrid(8, GridKind::Unsigned)), 25.5);
  // The floor: an all-zero tensor's threshold still gives a usable step.
  EXPECT_EQ(threshold_to_scale(0.0, 8), kScaleFloor);
  EXPECT_EQ(kScaleFloor, 1e-8);
  EXPECT_NE(error_of([] { floor_scale(-1.0); }).find("must be finite and >= 0"), std::string::npos);
}

TEST(QuantGrid, RoundingModesOnTies) {
  const std::vector<double> v = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, 2.6, -2.4};
  const std::vector<double> even = {0, 2, 2, -0.0, -2, -2, 0, 3, -2};
  const std::vector<double> away = {1, 2, 3, -1, -2, -3, 0, 3, -2};
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(round_value(v[i], Rounding::HalfEven), even[i]) << v[i];
    EXPECT_EQ(round_value(v[i], Rounding::HalfAway), away[i]) << v[i];
    if (i != 6) {  // 0.49999999999999994 becomes 0.5 as a float
      EXPECT_EQ(round_half_away(static_cast<float>(v[i])), static_cast<float>(away[i])) << v[i];
    }
  }
  // The largest float below 0.5 must not round up (a naive trunc(v + 0.5) gets this wrong).
  EXPECT_EQ(round_half_away(0.49999997f), 0.0f);
  EXPECT_EQ(round_half_away(-0.49999997f), -0.0f);
}

TEST(QuantGrid, NamesRoundTripAndUnknownNamesListAllowed) {
  for (GridKind k : {GridKind::Signed, GridKind::Narrow, GridKind::Unsigned})
    EXPECT_EQ(grid_kind_from_name(grid_kind_name(k)), k);
  for (Rounding r : {Rounding::HalfEven, Rounding::HalfAway}) EXPECT_EQ(rounding_from_name(rounding_name(r)), r);
  for (SteMode m : {SteMode::Clipped, SteMode::Identity}) EXPECT_EQ(ste_mode_from_name(ste_mode_name(m)), m);
  EXPECT_NE(error_of([] { grid_kind_from_name("wide"); }).find("allowed: signed, narrow, unsigned"), std::string::npos);
  EXPECT_NE(error_of([] { rounding_from_name("up"); }).find("allowed: half_even, half_away"), std::string::npos);
  EXPECT_NE(error_of([] { ste_mode_from_name("x"); }).find("allowed: clipped, identity"), std::string::npos);
}

// ---- fake_quantize forward ----

TEST(FakeQuantize, TiesFollowTheRoundingMode) {
  // s = 0.5: x/s = 0.5, 1.5, 2.5, -0.5, -1.5, 2, 0.6
  Tensor x = vec({0.25, 0.75, 1.25, -0.25, -0.75, 1.0, 0.3});
  EXPECT_TRUE(AllClose(fq(x, 0.5, 8, GridKind::Signed, Rounding::HalfEven), vec({0, 1, 1, 0, -1, 1, 0.5}), 0, 0));
  EXPECT_TRUE(
      AllClose(fq(x, 0.5, 8, GridKind::Signed, Rounding::HalfAway), vec({0.5, 1, 1.5, -0.5, -1, 1, 0.5}), 0, 0));
  Tensor x64 = x.to(DType::F64);
  EXPECT_TRUE(AllClose(fq(x64, 0.5, 8, GridKind::Signed, Rounding::HalfAway),
                       vec({0.5, 1, 1.5, -0.5, -1, 1, 0.5}, DType::F64), 0, 0));
}

TEST(FakeQuantize, GridEdgesAndBeyond) {
  // int4 signed [-8, 7], s = 1.
  Tensor x = vec({-9, -8, -8.4, -8.6, 7, 7.4, 7.6, 100, -100});
  EXPECT_TRUE(AllClose(fq(x, 1, 4, GridKind::Signed), vec({-8, -8, -8, -8, 7, 7, 7, 7, -8}), 0, 0));
  // int4 narrow [-7, 7].
  Tensor xn = vec({-8, -7, -7.4, -7.6, 7.6});
  EXPECT_TRUE(AllClose(fq(xn, 1, 4, GridKind::Narrow), vec({-7, -7, -7, -7, 7}), 0, 0));
  // uint4 [0, 15].
  Tensor xu = vec({-0.4, -0.6, 15.4, 15.6, 3.2});
  EXPECT_TRUE(AllClose(fq(xu, 1, 4, GridKind::Unsigned), vec({0, 0, 15, 15, 3}), 0, 0));
  // uint4 with zero point 3, s = 0.5: round(x/s)+3 = 0, -1, 15, 16, 3 -> clamp -> (q-3)*0.5.
  Tensor xz = vec({-1.5, -2.0, 6.0, 6.3, 0.1});
  EXPECT_TRUE(AllClose(fq(xz, 0.5, 4, GridKind::Unsigned, Rounding::HalfEven, 3), vec({-1.5, -1.5, 6, 6, 0}), 0, 0));
}

TEST(FakeQuantize, BitWidths2To16) {
  // int2 signed [-2, 1].
  EXPECT_TRUE(AllClose(fq(vec({-3, -1.6, 0.4, 1.4, 2}), 1, 2, GridKind::Signed), vec({-2, -2, 0, 1, 1}), 0, 0));
  // int8 narrow, s = 0.1 (values away from ties).
  EXPECT_TRUE(AllClose(fq(vec({0.33, -12.9, 12.64, 5.02}), 0.1, 8, GridKind::Narrow), vec({0.3, -12.7, 12.6, 5.0}),
                       1e-6, 1e-6));
  // int16 signed [-32768, 32767], s = 1; 1000.5 is a tie.
  EXPECT_TRUE(AllClose(fq(vec({32767.4, 32767.6, -32768.4, -32768.6, 1000.5}), 1, 16, GridKind::Signed),
                       vec({32767, 32767, -32768, -32768, 1000}), 0, 0));
  // uint8 [0, 255], s = 2.
  EXPECT_TRUE(AllClose(fq(vec({-3, 9.2, 509, 511, 600}), 2, 8, GridKind::Unsigned), vec({0, 10, 508, 510, 510}), 0, 0));
}

TEST(FakeQuantize, AllZeroTensorStaysFinite) {
  Tensor x = zeros({4, 5});
  const double s = threshold_to_scale(abs_max(x), 8);
  EXPECT_EQ(s, kScaleFloor);
  Tensor y = fake_quantize(x, full({1}, s), Tensor(), -1, QuantGrid(8, GridKind::Signed));
  EXPECT_TRUE(AllClose(y, zeros({4, 5}), 0, 0));
  // An explicit zero step is floored rather than dividing by zero.
  Tensor y0 = fake_quantize(vec({0, 0, 0}), zeros({1}), Tensor(), -1, QuantGrid(8, GridKind::Narrow));
  EXPECT_TRUE(AllClose(y0, zeros({3}), 0, 0));
  auto g = input_grad([](const Tensor& t) { return fake_quantize(t, zeros({1}), Tensor(), -1, QuantGrid()); },
                      zeros({3}), ones({3}));
  EXPECT_EQ(g, ones_vec(3));
  EXPECT_NE(error_of([] {
              fake_quantize(vec({1}), full({1}, -0.5), Tensor(), -1, QuantGrid());
            }).find("step size must be finite and >= 0, got -0.5"),
            std::string::npos);
}

TEST(FakeQuantize, PerChannelAxis0And1) {
  // Channels with s = 0.5 and s = 2 (int8 narrow): x/s = [0.6, -1.2, 2.2] and [1.5, -2.5, 4.5].
  Tensor s = vec({0.5, 2});
  QuantGrid g(8, GridKind::Narrow);
  Tensor x0 = tensor({0.3, -0.6, 1.1, 3, -5, 9}, {2, 3});
  Tensor want0 = tensor({0.5, -0.5, 1.0, 4, -4, 8}, {2, 3});
  EXPECT_TRUE(AllClose(fake_quantize(x0, s, Tensor(), 0, g), want0, 0, 0));
  Tensor want0_away = tensor({0.5, -0.5, 1.0, 4, -6, 10}, {2, 3});
  EXPECT_TRUE(AllClose(fake_quantize(x0, s, Tensor(), 0, g, Rounding::HalfAway), want0_away, 0, 0));
  // The same values laid out along axis 1 ([3, 2], channels in the last dim).
  Tensor x1 = tensor({0.3, 3, -0.6, -5, 1.1, 9}, {3, 2});
  Tensor want1 = tensor({0.5, 4, -0.5, -4, 1.0, 8}, {3, 2});
  EXPECT_TRUE(AllClose(fake_quantize(x1, s, Tensor(), 1, g), want1, 0, 0));
  // A non-contiguous view gives the same as its contiguous copy.
  EXPECT_TRUE(AllClose(fake_quantize(x0.t(), s, Tensor(), 1, g), want0.t().contiguous(), 0, 0));
  // Per-channel zero points on uint4: channel 1 has z = 2.
  Tensor zp = from_vector<int32_t>({0, 2}, {2});
  Tensor xu = tensor({1.2, -1, 2.2, -1.2}, {2, 2});  // ch0 s=0.5: 2.4->2, -2->0; ch1 s=2: 1.1->1+2, -0.6->-1+2
  Tensor wantu = tensor({1.0, 0.0, 2.0, -2.0}, {2, 2});
  EXPECT_TRUE(AllClose(fake_quantize(xu, s, zp, 0, QuantGrid(4, GridKind::Unsigned)), wantu, 0, 0));
  // Shape errors name the op, the input and the scale.
  std::string e = error_of([&] { fake_quantize(x0, vec({1, 2, 3}), Tensor(), 0, g); });
  EXPECT_NE(e.find("fake_quantize: input [2, 3] has 2 channels along axis 0, but scale has shape [3]"),
            std::string::npos)
      << e;
  EXPECT_NE(error_of([&] { fake_quantize(x0, s, Tensor(), 2, g); }).find("axis must be -1 (per tensor) or in [0, 2)"),
            std::string::npos);
}

namespace {
// Naive scalar fake quantization in f32, written from the formula.
float ref_fq(float x, float s, int64_t lo, int64_t hi, Rounding r) {
  const float inv = 1.0f / s;
  float v = x * inv;
  float q = r == Rounding::HalfEven ? std::nearbyint(v) : std::round(v);
  q = std::min<float>(std::max<float>(q, lo), hi);
  return q * s;
}
}  // namespace

TEST(FakeQuantize, LastAxisChannelsSplitAcrossThreads) {
  // [999, 77] along axis 1: parallel chunk boundaries fall inside rows, so runs start mid-row.
  const int prev = num_threads();
  set_num_threads(3);
  Generator gen(13);
  Tensor x = randn({999, 77}, DType::F32, &gen);
  // Scales alternate in a period of 3, so a run that used the wrong channel would show.
  std::vector<float> sv(77);
  for (int c = 0; c < 77; ++c) sv[c] = c % 3 == 0 ? 0.5f : 0.01f + 0.001f * static_cast<float>(c);
  QuantGrid g(4, GridKind::Signed);
  auto y = fake_quantize(x, from_vector(sv, {77}), Tensor(), 1, g).to_vector<float>();
  Tensor xr = x.detach().set_requires_grad(true);
  fake_quantize(xr, from_vector(sv, {77}), Tensor(), 1, g).backward(ones({999, 77}));
  auto dx = xr.grad().to_vector<float>();
  auto xv = x.to_vector<float>();
  set_num_threads(prev);
  for (size_t i = 0; i < xv.size(); ++i) {
    ASSERT_EQ(y[i], ref_fq(xv[i], sv[i % 77], -8, 7, Rounding::HalfEven)) << i;
    const float q = std::nearbyint(xv[i] * (1.0f / sv[i % 77]));
    ASSERT_EQ(dx[i], (q >= -8 && q <= 7) ? 1.0f : 0.0f) << i;
  }
  // Per-channel abs-max along the last axis; channel c holds values near c + 1.
  Tensor xa = add(mul(x, 0.1), arange(1.0, 78.0, 1.0).reshape({1, 77}));
  auto xav = xa.to_vector<float>();
  std::vector<double> am_want(77, 0.0);
  for (size_t i = 0; i < xav.size(); ++i) am_want[i % 77] = std::max<double>(am_want[i % 77], std::fabs(xav[i]));
  set_num_threads(3);
  auto am = abs_max_per_channel(xa, 1);
  set_num_threads(prev);
  EXPECT_EQ(am, am_want);
}

TEST(FakeQuantize, LargeTensorsMatchNaiveReference) {
  // Large enough for the parallel path; per tensor and per channel along axes 0, 1 and 3.
  Generator gen(7);
  Tensor x = randn({8, 16, 24, 32}, DType::F32, &gen);
  std::vector<float> xv = x.to_vector<float>();
  for (Rounding r : {Rounding::HalfEven, Rounding::HalfAway}) {
    QuantGrid g(8, GridKind::Narrow);
    auto y = fake_quantize(x, full({1}, 0.013), Tensor(), -1, g, r).to_vector<float>();
    const float s = 0.013f;
    for (size_t i = 0; i < xv.size(); ++i) ASSERT_EQ(y[i], ref_fq(xv[i], s, -127, 127, r)) << i;
    for (int64_t axis : {0, 1, 3}) {
      const int64_t c = x.size(axis);
      std::vector<float> sv(c);
      for (int64_t k = 0; k < c; ++k) sv[k] = 0.004f + 0.001f * static_cast<float>(k);
      auto yc = fake_quantize(x, from_vector(sv, {c}), Tensor(), axis, g, r).to_vector<float>();
      int64_t inner = 1;
      for (int64_t d = axis + 1; d < 4; ++d) inner *= x.size(d);
      for (size_t i = 0; i < xv.size(); ++i) {
        const int64_t ch = (static_cast<int64_t>(i) / inner) % c;
        ASSERT_EQ(yc[i], ref_fq(xv[i], sv[ch], -127, 127, r)) << "axis " << axis << " element " << i;
      }
    }
  }
}

// ---- straight-through estimators ----

TEST(FakeQuantize, ClippedSteMasksOutOfGrid) {
  Tensor dy = vec({1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto op = [](const Tensor& t) { return fq(t, 1, 4, GridKind::Signed); };
  // round(x) in [-8, 7]: -9 out, -8 in, -8.4 in, -8.6 out, 7 in, 7.4 in, 7.6 out, 100 out, -100 out.
  EXPECT_EQ(input_grad(op, vec({-9, -8, -8.4, -8.6, 7, 7.4, 7.6, 100, -100}), dy),
            (std::vector<double>{0, 2, 3, 0, 5, 6, 0, 0, 0}));
  // Zero point 3 on uint4: round(x/0.5)+3 = 0 in, -1 out, 15 in, 16 out, 3 in.
  auto opz = [](const Tensor& t) { return fq(t, 0.5, 4, GridKind::Unsigned, Rounding::HalfEven, 3); };
  EXPECT_EQ(input_grad(opz, vec({-1.5, -2.0, 6.0, 6.3, 0.1}), vec({1, 1, 1, 1, 1})),
            (std::vector<double>{1, 0, 1, 0, 1}));
  // The mask follows the rounding mode: 7.5 rounds to 8 (out) when half-even, and -8.5 to -9
  // (out) when half-away but to -8 (in) when half-even.
  auto even = [](const Tensor& t) { return fq(t, 1, 4, GridKind::Signed, Rounding::HalfEven); };
  auto away = [](const Tensor& t) { return fq(t, 1, 4, GridKind::Signed, Rounding::HalfAway); };
  EXPECT_EQ(input_grad(even, vec({7.5, -8.5, 6.5}), vec({1, 1, 1})), (std::vector<double>{0, 1, 1}));
  EXPECT_EQ(input_grad(away, vec({7.5, -8.5, 6.5}), vec({1, 1, 1})), (std::vector<double>{0, 0, 1}));
}

TEST(FakeQuantize, IdentitySteAndPerChannelMask) {
  auto ident = [](const Tensor& t) { return fq(t, 1, 4, GridKind::Signed, Rounding::HalfEven, 0, SteMode::Identity); };
  EXPECT_EQ(input_grad(ident, vec({-9, 0.3, 100}), vec({1, 2, 3})), (std::vector<double>{1, 2, 3}));
  // Per channel along axis 1 of [2, 2]: channel 0 s = 1, channel 1 s = 10 (int4 narrow [-7, 7]).
  auto pc = [](const Tensor& t) {
    return fake_quantize(t, vec({1, 10}, DType::F64), Tensor(), 1, QuantGrid(4, GridKind::Narrow));
  };
  Tensor x = tensor({8, 8, -3, -83}, {2, 2}, DType::F64);  // 8 out | 0.8 in ; -3 in | -8.3 out
  EXPECT_EQ(input_grad(pc, x, ones({2, 2}, DType::F64)), (std::vector<double>{0, 1, 1, 0}));
  // Large tensor mask against the formula (parallel backward).
  Generator gen(3);
  Tensor xl = mul(randn({300, 400}, DType::F32, &gen), 3.0);
  auto gl = input_grad([](const Tensor& t) { return fq(t, 0.05, 6, GridKind::Signed); }, xl.detach(), ones({300, 400}));
  auto xs = xl.to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    const float q = std::nearbyint(xs[i] * (1.0f / 0.05f));
    ASSERT_EQ(gl[i], (q >= -32 && q <= 31) ? 1.0 : 0.0) << i;
  }
}

// ---- quantize / dequantize ----

TEST(Quantize, IntegerCodesAndDtypes) {
  QuantParams p = per_tensor_params(1.0, 0, QuantGrid(4, GridKind::Signed));
  Tensor q = quantize(vec({-9, -8, -8.4, 7.4, 7.6, 0.5, 1.5}), p);
  EXPECT_EQ(q.dtype(), DType::I8);
  EXPECT_EQ(q.to_vector<int64_t>(), (std::vector<int64_t>{-8, -8, -8, 7, 7, 0, 2}));
  QuantParams pu = per_tensor_params(2.0, 0, QuantGrid(8, GridKind::Unsigned));
  Tensor qu = quantize(vec({-3, 9.2, 509, 600}), pu);
  EXPECT_EQ(qu.dtype(), DType::U8);
  EXPECT_EQ(qu.to_vector<int64_t>(), (std::vector<int64_t>{0, 5, 254, 255}));
  QuantParams p16 = per_tensor_params(1.0, 0, QuantGrid(16, GridKind::Signed), Rounding::HalfAway);
  Tensor q16 = quantize(vec({32767.6, -32768.6, 1000.5}), p16);
  EXPECT_EQ(q16.dtype(), DType::I16);
  EXPECT_EQ(q16.to_vector<int64_t>(), (std::vector<int64_t>{32767, -32768, 1001}));
  QuantParams pu16 = per_tensor_params(1.0, 0, QuantGrid(16, GridKind::Unsigned));
  Tensor qu16 = quantize(vec({65535.2, 70000, -1}), pu16);
  EXPECT_EQ(qu16.dtype(), DType::I32);
  EXPECT_EQ(qu16.to_vector<int64_t>(), (std::vector<int64_t>{65535, 65535, 0}));
  // Per channel with zero points, and dequantize back.
  QuantParams pc = per_channel_params({0.5, 2.0}, 0, QuantGrid(4, GridKind::Unsigned), Rounding::HalfEven, {0, 2});
  Tensor qc = quantize(tensor({1.2, -1, 2.2, -1.2}, {2, 2}), pc);
  EXPECT_EQ(qc.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 3, 1}));
  EXPECT_TRUE(AllClose(dequantize(qc, pc), tensor({1.0, 0.0, 2.0, -2.0}, {2, 2}), 0, 0));
  EXPECT_NE(error_of([&] { quantize(vec({1, NAN}), p); }).find("contains 1 NaN"), std::string::npos);
  EXPECT_NE(error_of([&] { dequantize(vec({1}), p); }).find("expected an integer tensor"), std::string::npos);
}

TEST(Quantize, DequantizeOfQuantizeEqualsFakeQuantizeExactly) {
  Generator gen(11);
  Tensor x = mul(randn({64, 3, 5, 5}, DType::F32, &gen), 0.7);
  std::vector<double> scales;
  std::vector<int64_t> zps;
  for (int c = 0; c < 64; ++c) {
    scales.push_back(0.003 + 0.0007 * c);
    zps.push_back(c % 5 - 2);
  }
  for (Rounding r : {Rounding::HalfEven, Rounding::HalfAway}) {
    for (GridKind k : {GridKind::Signed, GridKind::Narrow, GridKind::Unsigned}) {
      QuantParams pc = per_channel_params(scales, 0, QuantGrid(8, k), r, zps);
      EXPECT_TRUE(AllClose(dequantize(quantize(x, pc), pc), fake_quantize(x, pc), 0, 0));
      QuantParams pt = per_tensor_params(0.01, 1, QuantGrid(6, k), r);
      EXPECT_TRUE(AllClose(dequantize(quantize(x, pt), pt), fake_quantize(x, pt), 0, 0));
    }
  }
}

// ---- PACT ----

TEST(PactClip, ForwardAndGradients) {
  Tensor x = vec({-2.7, -1.2, -0.4, 0.3, 0.9, 1.7, 2.4, -1.9}, DType::F64);
  Tensor a = full({1}, 1.5, DType::F64);
  EXPECT_TRUE(AllClose(pact_clip(x, a), vec({-1.5, -1.2, -0.4, 0.3, 0.9, 1.5, 1.5, -1.5}, DType::F64), 0, 0));
  EXPECT_TRUE(AllClose(pact_clip(x, a, false), vec({0, 0, 0, 0.3, 0.9, 1.5, 1.5, 0}, DType::F64), 0, 0));
  for (bool two_sided : {true, false}) {
    auto r = gradcheck([two_sided](const std::vector<Tensor>& in) { return pact_clip(in[0], in[1], two_sided); },
                       {x.clone().set_requires_grad(true), a.clone().set_requires_grad(true)});
    EXPECT_TRUE(r.ok) << (two_sided ? "two-sided: " : "one-sided: ") << r.message;
  }
  // d/dalpha with dy = 1: +1 for each x > a (1.7, 2.4), -1 for each x < -a (-2.7, -1.9).
  Tensor at = a.clone().set_requires_grad(true);
  pact_clip(x, at).backward(ones({8}, DType::F64));
  EXPECT_EQ(at.grad().item(), 0.0);
  Tensor at1 = a.clone().set_requires_grad(true);
  pact_clip(x, at1, false).backward(ones({8}, DType::F64));
  EXPECT_EQ(at1.grad().item(), 2.0);
  Tensor xg = x.clone().set_requires_grad(true);
  pact_clip(xg, a).backward(ones({8}, DType::F64));
  EXPECT_EQ(xg.grad().to_vector<double>(), (std::vector<double>{0, 1, 1, 1, 1, 0, 0, 0}));
  EXPECT_NE(error_of([&] { pact_clip(x, full({1}, -1.0, DType::F64)); }).find("alpha must be positive"),
            std::string::npos);
}

TEST(PactClip, LargeF32AlphaGradient) {
  Generator gen(5);
  Tensor x = mul(randn({200, 500}, DType::F32, &gen), 2.0);
  Tensor a = full({1}, 1.0f).set_requires_grad(true);
  pact_clip(x, a).backward(ones({200, 500}));
  double want = 0;
  for (float v : x.to_vector<float>()) want += v > 1.0f ? 1.0 : (v < -1.0f ? -1.0 : 0.0);
  EXPECT_NEAR(a.grad().item(), want, 1e-3);
}

// ---- LSQ ----

namespace {

struct LsqCase {
  Shape shape;
  int64_t axis;
  std::vector<double> s, beta;  // beta empty: none
};

// Values of v = (x - beta)/s that avoid rounding ties and the grid edges of int4 narrow [-7, 7]:
// in-range ones round strictly inside (-7, 7), out-of-range ones lie beyond +-8.
const std::vector<double> kV = {-9.3, -6.2, -3.9, -1.2, -0.3, 0.2, 1.1, 2.8, 4.3, 5.9, 8.6, 12.1};

Tensor lsq_input(const LsqCase& c) {
  const int64_t n = numel_of(c.shape);
  const int64_t ch = c.axis < 0 ? 1 : c.shape[c.axis];
  int64_t inner = 1;
  for (size_t d = c.axis < 0 ? c.shape.size() : c.axis + 1; d < c.shape.size(); ++d) inner *= c.shape[d];
  if (c.axis < 0) inner = n;
  std::vector<double> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = (i / inner) % ch;
    x[i] = kV[(i * 5 + 3) % kV.size()] * c.s[k] + (c.beta.empty() ? 0.0 : c.beta[k]);
  }
  return from_vector(x, c.shape);
}

// The LSQ gradients are the exact gradients of F(x, s, beta) = s*clamp((x-beta)/s + c, qmin, qmax)
// + beta with c = round(v0) - v0 frozen at the base point (0 out of range): checked against finite
// differences of F, while the backward comes from lsq_fake_quantize.
void check_lsq_case(const LsqCase& c, Rounding r) {
  const QuantGrid grid(4, GridKind::Narrow);
  const double lo = grid.qmin(), hi = grid.qmax();
  Tensor x0 = lsq_input(c);
  const int64_t n = x0.numel();
  const int64_t ch = static_cast<int64_t>(c.s.size());
  int64_t inner = 1;
  for (size_t d = c.axis < 0 ? c.shape.size() : c.axis + 1; d < c.shape.size(); ++d) inner *= c.shape[d];
  if (c.axis < 0) inner = n;
  auto chan = [&](int64_t i) { return (i / inner) % ch; };
  std::vector<double> frozen(n);
  {
    auto xv = x0.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = chan(i);
      const double v = (xv[i] - (c.beta.empty() ? 0 : c.beta[k])) / c.s[k];
      frozen[i] = (v >= lo && v <= hi) ? round_value(v, r) - v : 0.0;
    }
  }
  auto f = [=](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    const Tensor& s = in[1];
    const Tensor& b = in[2];
    Tensor y = lsq_fake_quantize(x, s, b, c.axis, grid, r, 1.0);
    auto xv = x.to_vector<double>(), sv = s.to_vector<double>(), yv = y.to_vector<double>();
    std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(sv.size(), 0.0);
    std::vector<double> delta(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = chan(i);
      const double u = std::min(std::max((xv[i] - bv[k]) / sv[k] + frozen[i], lo), hi);
      delta[i] = sv[k] * u + bv[k] - yv[i];
    }
    return add(y, from_vector(delta, c.shape));
  };
  Tensor s = from_vector(c.s, {ch}).set_requires_grad(true);
  Tensor b = c.beta.empty() ? Tensor() : from_vector(c.beta, {ch}).set_requires_grad(true);
  auto res = gradcheck(f, {x0.set_requires_grad(true), s, b});
  EXPECT_TRUE(res.ok) << "axis " << c.axis << " shape " << shape_str(c.shape) << " beta " << !c.beta.empty() << ": "
                      << res.message;
}

}  // namespace

TEST(LsqFakeQuantize, ForwardHandComputed) {
  // s = 0.5, beta = 0.25, int4 narrow: v = (x - 0.25)/0.5.
  Tensor x = vec({0.25, 1.0, 1.5, -3.5, 9.0, -9.0}, DType::F64);  // v = 0, 1.5, 2.5, -7.5, 17.5, -18.5
  Tensor s = vec({0.5}, DType::F64), b = vec({0.25}, DType::F64);
  QuantGrid g(4, GridKind::Narrow);
  EXPECT_TRUE(
      AllClose(lsq_fake_quantize(x, s, b, -1, g), vec({0.25, 1.25, 1.25, -3.25, 3.75, -3.25}, DType::F64), 0, 1e-15));
  EXPECT_TRUE(AllClose(lsq_fake_quantize(x, s, b, -1, g, Rounding::HalfAway),
                       vec({0.25, 1.25, 1.75, -3.25, 3.75, -3.25}, DType::F64), 0, 1e-15));
}

TEST(LsqFakeQuantize, GradientsMatchFiniteDifferences) {
  for (Rounding r : {Rounding::HalfEven, Rounding::HalfAway}) {
    check_lsq_case({{3, 4}, -1, {0.5}, {}}, r);
    check_lsq_case({{3, 4}, -1, {0.5}, {0.1}}, r);
    check_lsq_case({{3, 4}, 0, {0.5, 0.25, 1.5}, {}}, r);
    check_lsq_case({{3, 4}, 1, {0.5, 0.25, 1.5, 0.75}, {0.1, -0.2, 0.3, 0.0}}, r);
    check_lsq_case({{2, 3, 2, 2}, 1, {0.5, 0.3, 0.9}, {0.05, -0.1, 0.2}}, r);
  }
}

TEST(LsqFakeQuantize, PerChannelGradScaleUsesElementsPerChannel) {
  // int8 narrow (qmax 127), s = 1 per channel, 4 elements per channel: g = 1/sqrt(4 * 127).
  Tensor x = tensor({0.2, 0.7, -0.2, 200, 0.4, 0.4, 0.4, 0.4}, {2, 4}, DType::F64);
  Tensor s = vec({1, 1}, DType::F64).set_requires_grad(true);
  Tensor b = vec({0, 0}, DType::F64).set_requires_grad(true);
  lsq_fake_quantize(x, s, b, 0, QuantGrid(8, GridKind::Narrow)).backward(ones({2, 4}, DType::F64));
  const double g = 1.0 / std::sqrt(4.0 * 127.0);
  // Channel 0: (0-0.2) + (1-0.7) + (0+0.2) + 127 (out of range, above); channel 1: 4 * (0 - 0.4).
  auto ds = s.grad().to_vector<double>();
  EXPECT_NEAR(ds[0], 127.3 * g, 1e-12);
  EXPECT_NEAR(ds[1], -1.6 * g, 1e-12);
  auto db = b.grad().to_vector<double>();
  EXPECT_NEAR(db[0], 1.0 * g, 1e-12);
  EXPECT_NEAR(db[1], 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(lsq_grad_scale(4, QuantGrid(8, GridKind::Narrow)), g);
  // Per tensor: N is the whole tensor.
  Tensor s1 = vec({1}, DType::F64).set_requires_grad(true);
  lsq_fake_quantize(x, s1, Tensor(), -1, QuantGrid(8, GridKind::Narrow)).backward(ones({2, 4}, DType::F64));
  EXPECT_NEAR(s1.grad().item(), (127.3 - 1.6) / std::sqrt(8.0 * 127.0), 1e-12);
}

namespace {
// Runs f with `n` threads, restoring the previous setting.
void with_threads(int n, const std::function<void()>& f) {
  const int prev = num_threads();
  set_num_threads(n);
  f();
  set_num_threads(prev);
}
}  // namespace

TEST(LsqFakeQuantize, LargeTensorsMatchNaiveReference) {
  // [999, 77] along the last axis: chunk boundaries of the parallel backward fall inside rows.
  with_threads(3, [] {
    Generator gen(9);
    const int64_t rows = 999, ch = 77;
    Tensor x = randn({rows, ch}, DType::F32, &gen);
    Tensor dy = randn({rows, ch}, DType::F32, &gen);
    std::vector<float> sv(ch);
    for (int c = 0; c < ch; ++c) sv[c] = 0.05f + 0.01f * static_cast<float>(c % 13);
    Tensor s = from_vector(sv, {ch}).set_requires_grad(true);
    Tensor xr = x.detach().set_requires_grad(true);
    QuantGrid g(4, GridKind::Narrow);
    Tensor y = lsq_fake_quantize(xr, s, Tensor(), 1, g);
    y.backward(dy);
    auto xv = x.to_vector<float>(), dyv = dy.to_vector<float>(), yv = y.to_vector<float>();
    auto dxv = xr.grad().to_vector<float>();
    std::vector<double> want(ch, 0.0);
    for (int64_t i = 0; i < rows * ch; ++i) {
      const int64_t c = i % ch;
      const float v = xv[i] * (1.0f / sv[c]);
      const bool in = v >= -7 && v <= 7;
      const float q = std::min(std::max(std::nearbyint(v), -7.0f), 7.0f);
      ASSERT_EQ(yv[i], q * sv[c]) << i;
      ASSERT_EQ(dxv[i], in ? dyv[i] : 0.0f) << i;
      want[c] += static_cast<double>(dyv[i]) * (in ? std::nearbyint(v) - v : (v < -7 ? -7.0 : 7.0));
    }
    auto ds = s.grad().to_vector<double>();
    const double gs = 1.0 / std::sqrt(static_cast<double>(rows) * 7.0);
    for (int64_t c = 0; c < ch; ++c) EXPECT_NEAR(ds[c], gs * want[c], 1e-4 * (1 + std::abs(gs * want[c]))) << c;
    // Per-channel abs-max along the same axis.
    auto am = abs_max_per_channel(x, 1);
    std::vector<double> am_want(ch, 0.0);
    for (int64_t i = 0; i < rows * ch; ++i) am_want[i % ch] = std::max<double>(am_want[i % ch], std::fabs(xv[i]));
    EXPECT_EQ(am, am_want);
  });
}

TEST(LsqFakeQuantize, LargeF32MatchesF64) {
  // The vectorised f32 reductions agree with the f64 path on a large per-channel tensor.
  Generator gen(9);
  Tensor x = randn({16, 4096}, DType::F32, &gen);
  std::vector<double> sv(16);
  for (int c = 0; c < 16; ++c) sv[c] = 0.01 + 0.002 * c;
  Tensor s32 = from_vector(sv, {16}).to(DType::F32).set_requires_grad(true);
  Tensor s64 = s32.detach().to(DType::F64).set_requires_grad(true);
  Tensor x64 = x.to(DType::F64);
  Tensor dy = randn({16, 4096}, DType::F32, &gen);
  QuantGrid g(4, GridKind::Narrow);
  lsq_fake_quantize(x, s32, Tensor(), 0, g).backward(dy);
  lsq_fake_quantize(x64, s64, Tensor(), 0, g).backward(dy.to(DType::F64));
  EXPECT_TRUE(AllClose(s32.grad(), s64.grad(), 1e-4, 1e-5));
}

TEST(LsqFakeQuantize, ArgumentErrors) {
  Tensor x = zeros({2, 3}, DType::F64);
  EXPECT_NE(error_of([&] {
              lsq_fake_quantize(x, vec({1}), Tensor(), -1, QuantGrid());
            }).find("step dtype f32 differs from input dtype f64"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              lsq_fake_quantize(x, vec({1, 1, 1}, DType::F64), Tensor(), 0, QuantGrid());
            }).find("input [2, 3] has 2 channels along axis 0, but scale has shape [3]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              lsq_fake_quantize(x, vec({1}, DType::F64), vec({1, 2}, DType::F64), -1, QuantGrid());
            }).find("beta [2] does not match step [1]"),
            std::string::npos);
}

// ---- range statistics ----

TEST(RangeStats, AbsMaxMinMaxAndMoments) {
  Tensor x = tensor({1, -7, 3, 2, -0.5, 4}, {2, 3});
  EXPECT_EQ(abs_max(x), 7.0);
  EXPECT_EQ(abs_max_per_channel(x, 0), (std::vector<double>{7, 4}));
  EXPECT_EQ(abs_max_per_channel(x, 1), (std::vector<double>{2, 7, 4}));
  EXPECT_EQ(min_max(x), (std::pair<double, double>{-7, 4}));
  EXPECT_EQ(abs_max(zeros({0})), 0.0);
  EXPECT_EQ(abs_max(vec({NAN, -2})), 2.0);
  EXPECT_EQ(mean_abs(x, 0), (std::vector<double>{11.0 / 3, 6.5 / 3}));
  ChannelMoments m = mean_std(tensor({1, -1, 3, -3}, {4}), -1);
  EXPECT_DOUBLE_EQ(m.mean[0], 0.0);
  EXPECT_DOUBLE_EQ(m.std[0], std::sqrt(20.0 / 3.0));
  EXPECT_DOUBLE_EQ(mean_std(tensor({1, -1, 3, -3}, {4}), -1, false).std[0], std::sqrt(5.0));
  ChannelMoments mc = mean_std(tensor({1, 3, -2, -2}, {2, 2}), 0);
  EXPECT_EQ(mc.mean, (std::vector<double>{2, -2}));
  EXPECT_EQ(mc.std, (std::vector<double>{std::sqrt(2.0), 0}));
  // Large tensor: the parallel reduction finds the single extreme element.
  Tensor big = zeros({300, 1000});
  big.data<float>()[123457] = -9.5f;
  EXPECT_EQ(abs_max(big), 9.5);
  EXPECT_EQ(abs_max_per_channel(big, 0)[123], 9.5);
  EXPECT_EQ(abs_max_per_channel(big, 0)[124], 0.0);
}
