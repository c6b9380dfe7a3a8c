// INT8 convolution and depthwise kernels (core/cpu/int8_conv.h) against scalar references written
// from the formulas, and against the float conv on dequantized values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu/conv2d.h"
#include "core/cpu/int8_conv.h"
#include "core/error.h"
#include "core/factory.h"
#include "core/parallel.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::cpu;

namespace {

struct Case {
  int64_t batch, h, w, c, out_c, k, stride, pad, dilation;
  int32_t zin;
};

struct Layer {
  std::vector<uint8_t> x;   // NHWC
  std::vector<int8_t> w;    // OIHW ([c, 1, k, k] for depthwise)
  std::vector<int32_t> bias;
  std::vector<float> mult;
};

Int8ConvGeometry geometry(const Case& cs, bool depthwise) {
  Int8ConvGeometry g;
  g.batch = cs.batch;
  g.in_h = cs.h;
  g.in_w = cs.w;
  g.in_c = cs.c;
  g.out_c = depthwise ? cs.c : cs.out_c;
  g.kernel_h = g.kernel_w = cs.k;
  g.stride_h = g.stride_w = cs.stride;
  g.pad_h = g.pad_w = cs.pad;
  g.dilation_h = g.dilation_w = cs.dilation;
  return g;
}

// Random layer whose outputs spread over the uint8 range (some clamp at both ends).
Layer make_layer(const Int8ConvGeometry& g, bool depthwise, std::mt19937& rng) {
  Layer l;
  const int64_t per_out = (depthwise ? 1 : g.in_c) * g.kernel_h * g.kernel_w;
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  l.x.resize(static_cast<size_t>(g.batch * g.in_h * g.in_w * g.in_c));
  for (auto& v : l.x) v = static_cast<uint8_t>(u8(rng));
  l.w.resize(static_cast<size_t>(g.out_c * per_out));
  for (auto& v : l.w) v = static_cast<int8_t>(s8(rng));
  const double acc_std = std::sqrt(static_cast<double>(per_out)) * 100.0 * 74.0;
  std::uniform_real_distribution<double> f(0.5, 1.5), b(-1.0, 1.0);
  for (int64_t o = 0; o < g.out_c; ++o) {
    l.bias.push_back(static_cast<int32_t>(b(rng) * acc_std));
    l.mult.push_back(static_cast<float>(f(rng) * 50.0 / acc_std));
  }
  return l;
}

// acc(n, oh, ow, o) = sum over valid taps of (x - z) * w + bias (padding contributes nothing).
template <typename Weight>
std::vector<int32_t> reference_acc(const Layer& l, const Int8ConvGeometry& g, int32_t zin, bool depthwise,
                                   Weight weight_at) {
  const int64_t OH = g.out_h(), OW = g.out_w();
  std::vector<int32_t> acc(static_cast<size_t>(g.batch * OH * OW * g.out_c));
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < g.out_c; ++o) {
          int64_t s = l.bias[o];
          for (int64_t i = 0; i < g.kernel_h; ++i)
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
              const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
              const uint8_t* xp = l.x.data() + ((n * g.in_h + ih) * g.in_w + iw) * g.in_c;
              if (depthwise) {
                s += (xp[o] - zin) * weight_at(o, 0, i, j);
              } else {
                for (int64_t c = 0; c < g.in_c; ++c) s += (xp[c] - zin) * weight_at(o, c, i, j);
              }
            }
          acc[((n * OH + oh) * OW + ow) * g.out_c + o] = static_cast<int32_t>(s);
        }
  return acc;
}

std::vector<int32_t> reference_acc(const Layer& l, const Int8ConvGeometry& g, int32_t zin, bool depthwise) {
  const int64_t cin = depthwise ? 1 : g.in_c;
  return reference_acc(l, g, zin, depthwise, [&](int64_t o, int64_t c, int64_t i, int64_t j) {
    return static_cast<int32_t>(l.w[((o * cin + c) * g.kernel_h + i) * g.kernel_w + j]);
  });
}

// q = clamp(nearbyint(float(acc) * m) + z, qmin, qmax); float: clamp(float(acc) * m, fmin, fmax).
std::vector<uint8_t> reference_u8(const std::vector<int32_t>& acc, const std::vector<float>& mult, const Int8Output& o) {
  std::vector<uint8_t> q(acc.size());
  const size_t oc = mult.size();
  for (size_t i = 0; i < acc.size(); ++i) {
    const double r = std::nearbyint(static_cast<float>(acc[i]) * mult[i % oc]) + o.zero_point;
    q[i] = static_cast<uint8_t>(std::clamp<double>(r, o.qmin, o.qmax));
  }
  return q;
}

std::vector<float> reference_f32(const std::vector<int32_t>& acc, const std::vector<float>& mult, const Int8Output& o) {
  std::vector<float> y(acc.size());
  const size_t oc = mult.size();
  for (size_t i = 0; i < acc.size(); ++i) y[i] = std::clamp(static_cast<float>(acc[i]) * mult[i % oc], o.fmin, o.fmax);
  return y;
}

template <typename T>
::testing::AssertionResult same(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << +got[i] << ", want " << +want[i];
  return ::testing::AssertionSuccess();
}

std::vector<Int8Isa> isas() {
  std::vector<Int8Isa> v{Int8Isa::Scalar};
  if (int8_isa_supported(Int8Isa::Avx512Vnni)) v.push_back(Int8Isa::Avx512Vnni);
  if (int8_isa_supported(Int8Isa::Avx2)) v.push_back(Int8Isa::Avx2);
  return v;
}

// The brief's value sets, sampled so every value appears and the scalar references stay fast.
std::vector<Case> cases(bool depthwise) {
  std::vector<Case> out;
  const int64_t chans[] = {1, 3, 17, 64};
  const int64_t sizes[][2] = {{1, 1}, {5, 7}, {28, 28}};
  const int64_t outs[] = {1, 5, 16, 33};
  const int32_t zps[] = {0, 128, 37};
  std::mt19937 rng(depthwise ? 11 : 12);
  int idx = 0;
  for (int64_t k : {1, 3, 5})
    for (int64_t stride : {1, 2})
      for (int64_t pad : {0, 1, 2})
        for (int s = 0; s < 3; ++s) {
          Case cs{};
          cs.k = k;
          cs.stride = stride;
          cs.pad = pad;
          cs.h = sizes[s][0];
          cs.w = sizes[s][1];
          cs.dilation = (idx % 13 == 5 && k > 1) ? 2 : 1;
          if (cs.h + 2 * pad < cs.dilation * (k - 1) + 1 || cs.w + 2 * pad < cs.dilation * (k - 1) + 1) continue;
          cs.c = chans[idx % 4];
          cs.out_c = outs[(idx / 4) % 4];
          cs.zin = zps[idx % 3];
          cs.batch = (idx % 2) ? 3 : 1;
          if (cs.h == 28 && !depthwise) cs.c = std::min<int64_t>(cs.c, 17);  // keep the reference fast
          out.push_back(cs);
          ++idx;
          (void)rng;
        }
  return out;
}

std::string describe(const Case& c) {
  std::ostringstream os;
  os << "x [" << c.batch << ", " << c.h << ", " << c.w << ", " << c.c << "] -> " << c.out_c << " k" << c.k << " s"
     << c.stride << " p" << c.pad << " d" << c.dilation << " zin " << c.zin;
  return os.str();
}

// Output stages: plain, ReLU (qmin = z), ReLU6-like (qmax = z + 96), each with a zero point.
std::vector<Int8Output> u8_outputs() {
  std::vector<Int8Output> v(3);
  v[0].zero_point = 37;
  v[1].zero_point = 0;
  v[1].qmin = 0;
  v[2].zero_point = 128;
  v[2].qmin = 128;
  v[2].qmax = 224;
  return v;
}

}  // namespace

TEST(Int8Depthwise, BitExactAgainstReference) {
  std::mt19937 rng(1);
  int tested = 0;
  for (const Case& cs : cases(true)) {
    const Int8ConvGeometry g = geometry(cs, true);
    const Layer l = make_layer(g, true, rng);
    const auto acc = reference_acc(l, g, cs.zin, true);
    const int64_t ny = g.batch * g.out_h() * g.out_w() * g.out_c;
    for (Int8Isa isa : {Int8Isa::Scalar, Int8Isa::Avx512Vnni}) {
      if (isa == Int8Isa::Avx512Vnni && !int8_isa_supported(isa)) continue;
      const bool per_tensor = cs.c % 2 == 1;
      const PackedDepthwiseWeights pw = pack_int8_depthwise_weights(
          l.w.data(), cs.c, cs.k, cs.k, l.bias.data(), cs.zin, l.mult.data(), per_tensor ? 1 : cs.c, isa);
      std::vector<float> mult = per_tensor ? std::vector<float>(cs.c, l.mult[0]) : l.mult;
      for (const Int8Output& o : u8_outputs()) {
        std::vector<uint8_t> y(ny, 7);
        int8_depthwise_u8(l.x.data(), g, pw, o, y.data());
        ASSERT_TRUE(same(y, reference_u8(acc, mult, o))) << describe(cs) << " isa " << int8_isa_name(isa);
      }
      Int8Output of;
      of.fmin = cs.zin % 2 ? 0.0f : of.fmin;  // ReLU on the float output
      std::vector<float> yf(ny);
      int8_depthwise_f32(l.x.data(), g, pw, of, yf.data());
      ASSERT_TRUE(same(yf, reference_f32(acc, mult, of))) << describe(cs) << " isa " << int8_isa_name(isa);
      ++tested;
    }
  }
  EXPECT_GT(tested, 20);
}

TEST(Int8Conv, BitExactAgainstReference) {
  std::mt19937 rng(2);
  for (const Case& cs : cases(false)) {
    const Int8ConvGeometry g = geometry(cs, false);
    const Layer l = make_layer(g, false, rng);
    const auto acc = reference_acc(l, g, cs.zin, false);
    const int64_t ny = g.batch * g.out_h() * g.out_w() * g.out_c;
    for (Int8Isa isa : isas()) {
      const PackedInt8Weights pw =
          pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c, isa);
      for (const Int8Output& o : u8_outputs()) {
        std::vector<uint8_t> y(ny, 7);
        int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data());
        ASSERT_TRUE(same(y, reference_u8(acc, l.mult, o))) << describe(cs) << " isa " << int8_isa_name(isa);
      }
      Int8Output of;
      of.fmin = 0.0f;
      of.fmax = cs.zin == 37 ? 1.5f : of.fmax;
      std::vector<float> yf(ny);
      int8_conv2d_f32(l.x.data(), g, cs.zin, pw, of, yf.data());
      ASSERT_TRUE(same(yf, reference_f32(acc, l.mult, of))) << describe(cs) << " isa " << int8_isa_name(isa);
    }
  }
}

// Different kernel, stride, padding and dilation per axis (depthwise: kernel rows x 2 tap groups
// takes the VNNI kernel's generic tap count).
TEST(Int8Conv, AnisotropicGeometry) {
  std::mt19937 rng(6);
  for (bool depthwise : {false, true}) {
    Int8ConvGeometry g;
    g.batch = 2;
    g.in_h = 9;
    g.in_w = 11;
    g.in_c = 20;
    g.out_c = depthwise ? 20 : 7;
    g.kernel_h = 2;
    g.kernel_w = 5;
    g.stride_h = 1;
    g.stride_w = 2;
    g.pad_h = 1;
    g.pad_w = 2;
    g.dilation_h = 2;
    g.dilation_w = 1;
    const Layer l = make_layer(g, depthwise, rng);
    const int32_t zin = 99;
    const auto acc = reference_acc(l, g, zin, depthwise);
    Int8Output o;
    o.zero_point = 50;
    for (Int8Isa isa : isas()) {
      std::vector<uint8_t> y(acc.size());
      if (depthwise) {
        const auto pw = pack_int8_depthwise_weights(l.w.data(), g.in_c, g.kernel_h, g.kernel_w, l.bias.data(), zin,
                                                    l.mult.data(), g.in_c, isa);
        int8_depthwise_u8(l.x.data(), g, pw, o, y.data());
      } else {
        const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), zin, l.mult.data(), g.out_c, isa);
        int8_conv2d_u8(l.x.data(), g, zin, pw, o, y.data());
      }
      EXPECT_TRUE(same(y, reference_u8(acc, l.mult, o))) << (depthwise ? "depthwise " : "conv ") << int8_isa_name(isa);
    }
  }
}

// The integer kernels against the float conv (core/cpu/conv2d.h) on dequantized values: within one
// output step (the float path rounds once, the integer path after a float multiplier).
TEST(Int8Conv, MatchesFloatConvOnDequantizedValues) {
  std::mt19937 rng(3);
  for (bool depthwise : {false, true}) {
    for (const Case& cs : {Case{2, 9, 11, 17, 6, 3, 1, 1, 1, 37}, Case{1, 12, 10, 24, 24, 5, 2, 2, 1, 128},
                           Case{3, 7, 7, 8, 16, 1, 1, 0, 1, 0}}) {
      const Int8ConvGeometry g = geometry(cs, depthwise);
      Layer l = make_layer(g, depthwise, rng);
      const int64_t cin = depthwise ? 1 : g.in_c;
      const float sx = 0.05f, sy = 0.2f;
      const int32_t zy = 60;
      std::vector<float> sw(g.out_c);
      for (int64_t o = 0; o < g.out_c; ++o) {
        sw[o] = 0.0005f * (1.0f + static_cast<float>(o % 5));
        l.mult[o] = sx * sw[o] / sy;
        l.bias[o] = static_cast<int32_t>((static_cast<int64_t>(rng()) % 4001) - 2000);
      }
      // float conv on dequantized NCHW values
      std::vector<float> xf(l.x.size()), wf(l.w.size()), bf(g.out_c);
      const int64_t H = g.in_h, W = g.in_w, C = g.in_c;
      for (int64_t n = 0; n < g.batch; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t p = 0; p < H * W; ++p)
            xf[(n * C + c) * H * W + p] = sx * static_cast<float>(l.x[(n * H * W + p) * C + c] - cs.zin);
      for (int64_t o = 0; o < g.out_c; ++o) {
        for (int64_t t = 0; t < cin * cs.k * cs.k; ++t) wf[o * cin * cs.k * cs.k + t] = sw[o] * l.w[o * cin * cs.k * cs.k + t];
        bf[o] = sx * sw[o] * static_cast<float>(l.bias[o]);
      }
      const Tensor xt = from_vector(xf, {g.batch, C, H, W});
      const Tensor wt = from_vector(wf, {g.out_c, cin, cs.k, cs.k});
      const Conv2dGeometry fg = conv2d_geometry(xt.shape(), wt.shape(), {cs.stride, cs.stride}, {cs.pad, cs.pad},
                                                {cs.dilation, cs.dilation}, depthwise ? C : 1);
      const std::vector<float> yref = conv2d_forward(xt, wt, from_vector(bf, {g.out_c}), fg).to_vector<float>();
      const int64_t OH = g.out_h(), OW = g.out_w(), O = g.out_c;
      std::vector<uint8_t> y(static_cast<size_t>(g.batch * OH * OW * O));
      Int8Output o;
      o.zero_point = zy;
      if (depthwise) {
        const auto pw = pack_int8_depthwise_weights(l.w.data(), C, cs.k, cs.k, l.bias.data(), cs.zin, l.mult.data(), O);
        int8_depthwise_u8(l.x.data(), g, pw, o, y.data());
      } else {
        const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), O);
        int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data());
      }
      int64_t inside = 0;
      for (int64_t n = 0; n < g.batch; ++n)
        for (int64_t oc = 0; oc < O; ++oc)
          for (int64_t p = 0; p < OH * OW; ++p) {
            const double want = std::nearbyint(yref[(n * O + oc) * OH * OW + p] / sy) + zy;
            const double got = y[(n * OH * OW + p) * O + oc];
            if (want > 0 && want < 255) ++inside;
            ASSERT_LE(std::abs(std::clamp(want, 0.0, 255.0) - got), 1.0)
                << describe(cs) << (depthwise ? " depthwise" : " conv") << " at n " << n << " c " << oc << " p " << p;
          }
      EXPECT_GT(inside, g.batch * OH * OW * O / 2) << "most outputs should be unclamped";
    }
  }
}

TEST(Int8Conv, ThreadedEqualsSingleThreaded) {
  std::mt19937 rng(4);
  const int saved = num_threads();
  for (bool depthwise : {false, true}) {
    const Case cs{16, 16, 16, 32, 32, 3, 1, 1, 1, 20};
    const Int8ConvGeometry g = geometry(cs, depthwise);
    const Layer l = make_layer(g, depthwise, rng);
    const int64_t ny = g.batch * g.out_h() * g.out_w() * g.out_c;
    std::vector<uint8_t> y1(ny), y2(ny);
    Int8Output o;
    o.zero_point = 9;
    auto run = [&](std::vector<uint8_t>& y) {
      if (depthwise) {
        const auto pw = pack_int8_depthwise_weights(l.w.data(), cs.c, 3, 3, l.bias.data(), cs.zin, l.mult.data(), cs.c);
        int8_depthwise_u8(l.x.data(), g, pw, o, y.data());
      } else {
        const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c);
        int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data());
      }
    };
    set_num_threads(1);
    run(y1);
    set_num_threads(4);
    run(y2);
    set_num_threads(saved);
    EXPECT_TRUE(same(y1, y2)) << (depthwise ? "depthwise" : "conv");
    EXPECT_TRUE(same(y1, reference_u8(reference_acc(l, g, cs.zin, depthwise), l.mult, o)));
  }
}

TEST(Int8Conv, RejectsMismatchedArguments) {
  std::mt19937 rng(5);
  const Case cs{1, 5, 5, 4, 6, 3, 1, 1, 1, 10};
  const Int8ConvGeometry g = geometry(cs, false);
  const Layer l = make_layer(g, false, rng);
  const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c);
  std::vector<uint8_t> y(1000);
  Int8Output o;
  EXPECT_THROW(int8_conv2d_u8(l.x.data(), g, 11, pw, o, y.data()), Error);  // packed for zero point 10
  Int8ConvGeometry g2 = g;
  g2.in_c = 5;
  EXPECT_THROW(int8_conv2d_u8(l.x.data(), g2, cs.zin, pw, o, y.data()), Error);
  Int8ConvGeometry g3 = g;
  g3.pad_h = g3.pad_w = 0;
  g3.in_h = 2;
  EXPECT_THROW(int8_conv2d_u8(l.x.data(), g3, cs.zin, pw, o, y.data()), Error);  // smaller than the kernel
  o.qmax = 300;
  EXPECT_THROW(int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data()), Error);
  const Int8ConvGeometry gd = geometry(cs, true);
  const auto dw = pack_int8_depthwise_weights(l.w.data(), 4, 3, 3, nullptr, cs.zin, l.mult.data(), 1);
  Int8ConvGeometry gd2 = gd;
  gd2.in_c = gd2.out_c = 5;
  EXPECT_THROW(int8_depthwise_u8(l.x.data(), gd2, dw, Int8Output{}, y.data()), Error);
  EXPECT_THROW(pack_int8_depthwise_weights(l.w.data(), 4, 3, 3, nullptr, cs.zin, l.mult.data(), 2), Error);
}

// The VNNI conv paths picked by shape (indirect GEMM on the padded input, kernel rows padded to 4
// bytes for odd kw * c, the 3-tap 16 -> 16 channel kernel, the pixel-lane kernel for <= 8 output
// channels with pixels <= 4 bytes apart and K groups straddling kernel rows, the depthwise row
// builders and unit blocks) on the model shapes that select them, plus widths that leave partial
// 16- and 32-pixel blocks, every output stage (float outputs of pixel-lane shapes take the patch
// path) and every ISA.
TEST(Int8Conv, ShapeSpecificPathsMatchTheReference) {
  std::mt19937 rng(21);
  const std::vector<Case> conv_cases = {
      {2, 12, 28, 1, 16, 3, 1, 1, 1, 37},   // resnet/mobilenet stem: runs of 3 bytes padded to 4
      {2, 28, 28, 1, 6, 5, 1, 2, 1, 128},   // LeNet conv1: pixel lanes, groups straddle rows
      {2, 14, 14, 6, 16, 5, 1, 0, 1, 0},    // LeNet conv2: runs of 30 bytes padded to 32
      {2, 9, 37, 16, 16, 3, 1, 1, 1, 20},   // stage-1 conv: indirect, rows across output rows
      {2, 10, 10, 16, 32, 3, 2, 1, 1, 5},   // stride-2 conv
      {2, 10, 10, 16, 32, 1, 2, 0, 1, 77},  // stride-2 1x1 shortcut: x read in place
      {1, 7, 7, 64, 80, 3, 1, 1, 1, 3},     // two column panels
      {2, 11, 50, 2, 5, 3, 2, 1, 1, 9},     // pixel lanes, 4 bytes apart, 2 blocks per row
      {2, 6, 19, 4, 8, 3, 1, 1, 1, 200},    // pixel lanes, 8 channels
      {1, 5, 33, 3, 1, 3, 1, 0, 1, 255},    // pixel lanes, 1 channel, runs of 9 bytes
      {1, 6, 9, 3, 7, 2, 1, 1, 1, 1},       // even kernel, pixel lanes, runs of 6 bytes
      {1, 6, 9, 3, 9, 2, 1, 1, 1, 1},       // 9 channels: GEMM, runs of 6 bytes padded to 8
      {2, 5, 21, 1, 3, 1, 2, 0, 1, 4},      // 1x1 stride 2, one channel: pixel lanes, one run
  };
  for (const Case& cs : conv_cases) {
    const Int8ConvGeometry g = geometry(cs, false);
    const Layer l = make_layer(g, false, rng);
    const auto acc = reference_acc(l, g, cs.zin, false);
    for (Int8Isa isa : isas()) {
      const PackedInt8Weights pw =
          pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c, isa);
      for (const Int8Output& o : u8_outputs()) {
        std::vector<uint8_t> y(acc.size(), 7);
        int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data());
        ASSERT_TRUE(same(y, reference_u8(acc, l.mult, o))) << describe(cs) << " isa " << int8_isa_name(isa);
      }
      Int8Output of;
      of.fmin = -2.0f;
      of.fmax = 3.0f;
      std::vector<float> yf(acc.size());
      int8_conv2d_f32(l.x.data(), g, cs.zin, pw, of, yf.data());
      ASSERT_TRUE(same(yf, reference_f32(acc, l.mult, of))) << describe(cs) << " isa " << int8_isa_name(isa);
    }
  }
  for (const Case& cs : {Case{2, 9, 37, 16, 16, 3, 1, 1, 1, 20}, Case{2, 9, 10, 16, 16, 3, 2, 1, 1, 0},
                         Case{1, 7, 7, 48, 48, 3, 1, 1, 1, 128}, Case{1, 8, 11, 16, 16, 5, 1, 2, 1, 3},
                         Case{2, 6, 9, 72, 72, 3, 1, 1, 1, 3}, Case{1, 6, 9, 40, 40, 3, 2, 1, 1, 250},
                         Case{1, 9, 8, 40, 40, 5, 1, 2, 1, 66}, Case{1, 4, 5, 200, 200, 1, 1, 0, 1, 17}}) {
    const Int8ConvGeometry g = geometry(cs, true);
    const Layer l = make_layer(g, true, rng);
    const auto acc = reference_acc(l, g, cs.zin, true);
    for (Int8Isa isa : {Int8Isa::Scalar, Int8Isa::Avx512Vnni}) {
      if (!int8_isa_supported(isa)) continue;
      const auto pw = pack_int8_depthwise_weights(l.w.data(), cs.c, cs.k, cs.k, l.bias.data(), cs.zin, l.mult.data(),
                                                  cs.c, isa);
      for (const Int8Output& o : u8_outputs()) {
        std::vector<uint8_t> y(acc.size(), 7);
        int8_depthwise_u8(l.x.data(), g, pw, o, y.data());
        ASSERT_TRUE(same(y, reference_u8(acc, l.mult, o))) << "depthwise " << describe(cs) << " " << int8_isa_name(isa);
      }
    }
  }
}

// Batches too small to give every thread whole images split the output rows of each image.
TEST(Int8Conv, SmallBatchesSplitRowsAcrossThreads) {
  std::mt19937 rng(22);
  const int saved = num_threads();
  for (const Case& cs : {Case{1, 40, 40, 16, 32, 3, 1, 1, 1, 20}, Case{2, 56, 56, 1, 6, 5, 1, 2, 1, 7},
                         Case{1, 41, 39, 6, 16, 5, 2, 0, 1, 99}}) {
    const Int8ConvGeometry g = geometry(cs, false);
    const Layer l = make_layer(g, false, rng);
    const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c);
    Int8Output o;
    o.zero_point = 40;
    const auto want = reference_u8(reference_acc(l, g, cs.zin, false), l.mult, o);
    for (int threads : {1, 2, 3, 4}) {
      set_num_threads(threads);
      std::vector<uint8_t> y(want.size(), 1);
      int8_conv2d_u8(l.x.data(), g, cs.zin, pw, o, y.data());
      EXPECT_TRUE(same(y, want)) << describe(cs) << " threads " << threads;
    }
  }
  set_num_threads(saved);
}

// 2x2 stride-2 max pool (floor) of an NHWC uint8 map, from the definition.
std::vector<uint8_t> reference_maxpool2(const std::vector<uint8_t>& y, int64_t batch, int64_t h, int64_t w,
                                        int64_t c) {
  const int64_t ph = h / 2, pw = w / 2;
  std::vector<uint8_t> out(static_cast<size_t>(batch * ph * pw * c));
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t i = 0; i < ph; ++i)
      for (int64_t j = 0; j < pw; ++j)
        for (int64_t ch = 0; ch < c; ++ch) {
          uint8_t m = 0;
          for (int64_t di = 0; di < 2; ++di)
            for (int64_t dj = 0; dj < 2; ++dj)
              m = std::max(m, y[static_cast<size_t>(((n * h + 2 * i + di) * w + 2 * j + dj) * c + ch)]);
          out[static_cast<size_t>(((n * ph + i) * pw + j) * c + ch)] = m;
        }
  return out;
}

// A conv with its 2x2 max pool fused (LeNet's conv1 -> pool) gives exactly the conv's output pooled:
// odd output sizes (the last row / column is dropped), pooled rows of more than one 16-pixel block,
// threads splitting one image's rows, every ISA, and a negative multiplier (a folded BatchNorm with a
// negative scale), which reverses the order and must not be pooled on the accumulators.
TEST(Int8Conv, FusedMaxPoolEqualsConvThenPool) {
  std::mt19937 rng(24);
  const bool vbmi = int8_isa_supported(Int8Isa::Avx512Vnni) && __builtin_cpu_supports("avx512vbmi");
  const int saved = num_threads();
  const std::vector<Case> cases = {
      {2, 28, 28, 1, 6, 5, 1, 2, 1, 128},   // LeNet conv1
      {2, 11, 50, 2, 5, 3, 2, 1, 1, 9},     // 6 x 25 conv output: odd width
      {1, 5, 33, 3, 1, 3, 1, 0, 1, 255},    // 3 x 31: odd height and width
      {2, 7, 70, 1, 8, 3, 1, 1, 1, 3},      // 35 pooled pixels per row: three blocks
      {1, 6, 9, 3, 7, 2, 1, 1, 1, 1},       // even kernel, runs of 6 bytes
      {1, 160, 200, 1, 6, 5, 1, 2, 1, 7},   // one large image: rows split across threads
  };
  for (const Case& cs : cases) {
    const Int8ConvGeometry g = geometry(cs, false);
    Layer l = make_layer(g, false, rng);
    for (bool negative : {false, true}) {
      if (negative) l.mult[g.out_c / 2] = -l.mult[g.out_c / 2];
      const auto acc = reference_acc(l, g, cs.zin, false);
      for (Int8Isa isa : isas()) {
        const PackedInt8Weights pw =
            pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c, isa);
        const bool fused = int8_conv2d_maxpool2_fused(g, pw);
        EXPECT_EQ(fused, isa == Int8Isa::Avx512Vnni && vbmi && !negative) << describe(cs) << " " << int8_isa_name(isa);
        EXPECT_EQ(int8_conv2d_maxpool2_shape_fuses(g, isa), isa == Int8Isa::Avx512Vnni && vbmi) << describe(cs);
        for (const Int8Output& o : u8_outputs()) {
          const auto want = reference_maxpool2(reference_u8(acc, l.mult, o), g.batch, g.out_h(), g.out_w(), g.out_c);
          for (int threads : {1, 2}) {
            set_num_threads(threads);
            std::vector<uint8_t> y(want.size(), 7);
            int8_conv2d_maxpool2_u8(l.x.data(), g, cs.zin, pw, o, y.data());
            ASSERT_TRUE(same(y, want)) << describe(cs) << " isa " << int8_isa_name(isa) << " negative " << negative
                                       << " threads " << threads << " zp " << o.zero_point;
          }
        }
      }
    }
  }
  set_num_threads(saved);
  // LeNet's conv2 (16 output channels) runs on the GEMM path, which does not fuse the pool.
  EXPECT_FALSE(int8_conv2d_maxpool2_shape_fuses(geometry(Case{2, 14, 14, 6, 16, 5, 1, 0, 1, 0}, false)));
  const Case tiny{1, 3, 8, 1, 4, 3, 1, 0, 1, 0};  // 1 x 6 conv output: no 2x2 window
  const Int8ConvGeometry g = geometry(tiny, false);
  const Layer l = make_layer(g, false, rng);
  const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), 0, l.mult.data(), g.out_c);
  std::vector<uint8_t> y(64);
  qslim::testing::expect_error([&] { int8_conv2d_maxpool2_u8(l.x.data(), g, 0, pw, Int8Output{}, y.data()); },
                               {"int8_conv2d_maxpool2_u8", "1x6", "smaller than the 2x2 pool"});
}

// Weights packed for one geometry are refused for a geometry with another patch layout.
TEST(Int8Conv, PaddedRunWeightsNeedTheirGeometry) {
  if (!int8_isa_supported(Int8Isa::Avx512Vnni)) GTEST_SKIP() << "no AVX512-VNNI";
  std::mt19937 rng(23);
  const Case cs{1, 9, 9, 1, 16, 3, 1, 1, 1, 10};
  const Int8ConvGeometry g = geometry(cs, false);
  const Layer l = make_layer(g, false, rng);
  const auto pw = pack_int8_conv_weights(l.w.data(), g, l.bias.data(), cs.zin, l.mult.data(), g.out_c,
                                         Int8Isa::Avx512Vnni);
  std::vector<uint8_t> y(2000);
  Int8ConvGeometry gd = g;
  gd.dilation_w = 2;
  try {
    int8_conv2d_u8(l.x.data(), gd, cs.zin, pw, Int8Output{}, y.data());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dilation 1x2"), std::string::npos) << e.what();
  }
  Int8ConvGeometry gk = g;  // 1x9 kernel: same K, different runs
  gk.kernel_h = 1;
  gk.kernel_w = 9;
  gk.pad_h = 0;
  gk.pad_w = 4;
  EXPECT_THROW(int8_conv2d_u8(l.x.data(), gk, cs.zin, pw, Int8Output{}, y.data()), Error);
}
