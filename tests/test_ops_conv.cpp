// conv2d and pooling: forward against naive loops written here, gradients against the adjoint of
// those loops (large f32 cases that take the threaded paths) and finite differences in f64.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/kernels.h"
#include "core/parallel.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

struct ConvCase {
  std::string name;
  int64_t n, c, h, w, o, kh, kw;
  Conv2dParams p;
  bool bias;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d) { return (in + 2 * pad - (k - 1) * d - 1) / s + 1; }

struct RefConv {
  const ConvCase& cs;
  int64_t oh, ow, cg, og;
  explicit RefConv(const ConvCase& c)
      : cs(c),
        oh(out_size(c.h, c.kh, c.p.stride[0], c.p.padding[0], c.p.dilation[0])),
        ow(out_size(c.w, c.kw, c.p.stride[1], c.p.padding[1], c.p.dilation[1])),
        cg(c.c / c.p.groups),
        og(c.o / c.p.groups) {}

  // Calls f(x_index, w_index, y_index) for every multiply-add of the convolution.
  template <typename F>
  void each(F f) const {
    for (int64_t n = 0; n < cs.n; ++n)
      for (int64_t o = 0; o < cs.o; ++o) {
        const int64_t grp = o / og;
        for (int64_t y = 0; y < oh; ++y)
          for (int64_t x = 0; x < ow; ++x)
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t i = 0; i < cs.kh; ++i)
                for (int64_t j = 0; j < cs.kw; ++j) {
                  const int64_t ih = y * cs.p.stride[0] - cs.p.padding[0] + i * cs.p.dilation[0];
                  const int64_t iw = x * cs.p.stride[1] - cs.p.padding[1] + j * cs.p.dilation[1];
                  if (ih < 0 || ih >= cs.h || iw < 0 || iw >= cs.w) continue;
                  const int64_t c = grp * cg + ci;
                  f(((n * cs.c + c) * cs.h + ih) * cs.w + iw, ((o * cg + ci) * cs.kh + i) * cs.kw + j,
                    ((n * cs.o + o) * oh + y) * ow + x);
                }
      }
  }

  std::vector<double> forward(const std::vector<double>& xv, const std::vector<double>& wv,
                              const std::vector<double>& bv) const {
    std::vector<double> y(cs.n * cs.o * oh * ow, 0.0);
    if (!bv.empty())
      for (size_t k = 0; k < y.size(); ++k) y[k] = bv[(k / (oh * ow)) % cs.o];
    each([&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += xv[xi] * wv[wi]; });
    return y;
  }
};

Tensor make_input(const ConvCase& c, DType dt, uint64_t seed) {
  Generator g(seed);
  return randn({c.n, c.c, c.h, c.w}, dt, &g);
}
Tensor make_weight(const ConvCase& c, DType dt, uint64_t seed) {
  Generator g(seed + 1);
  return randn({c.o, c.c / c.p.groups, c.kh, c.kw}, dt, &g);
}
Tensor make_bias(const ConvCase& c, DType dt, uint64_t seed) {
  Generator g(seed + 2);
  return c.bias ? randn({c.o}, dt, &g) : Tensor();
}

Conv2dParams params(std::array<int64_t, 2> s, std::array<int64_t, 2> pad, std::array<int64_t, 2> d, int64_t groups) {
  Conv2dParams p;
  p.stride = s;
  p.padding = pad;
  p.dilation = d;
  p.groups = groups;
  return p;
}

// Small cases covering every kernel path: im2col (stride, padding, dilation, groups, odd kernels),
// 1x1 without im2col, and the direct depthwise kernel.
std::vector<ConvCase> small_cases() {
  return {
      {"3x3_pad1", 2, 3, 6, 5, 4, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"stride2", 2, 2, 7, 6, 3, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 1), false},
      {"asym_stride_pad_kernel", 1, 2, 6, 7, 3, 3, 2, params({2, 1}, {0, 1}, {1, 1}, 1), true},
      {"dilation2", 2, 2, 7, 7, 2, 3, 3, params({1, 1}, {2, 1}, {2, 2}, 1), true},
      {"groups2", 2, 4, 5, 5, 6, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 2), true},
      {"depthwise3x3", 2, 3, 6, 6, 3, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 3), true},
      {"depthwise_stride2", 2, 4, 7, 6, 4, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 4), false},
      {"depthwise5x5_stride32", 1, 2, 11, 13, 2, 5, 5, params({3, 2}, {2, 2}, {1, 1}, 2), true},
      {"depthwise_pad_beyond_kernel", 2, 2, 5, 6, 2, 3, 3, params({1, 1}, {3, 3}, {1, 1}, 2), true},
      {"depthwise_dilated_nopad", 1, 2, 7, 8, 2, 3, 2, params({1, 2}, {0, 0}, {2, 1}, 2), true},
      {"channel_multiplier", 2, 2, 5, 5, 4, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 2), true},
      {"pointwise", 2, 4, 4, 5, 3, 1, 1, params({1, 1}, {0, 0}, {1, 1}, 1), true},
      {"pointwise_groups", 2, 4, 3, 3, 6, 1, 1, params({1, 1}, {0, 0}, {1, 1}, 2), false},
      {"1x1_stride2", 2, 3, 5, 5, 2, 1, 1, params({2, 2}, {0, 0}, {1, 1}, 1), true},
      {"lenet_conv1", 2, 1, 8, 8, 3, 5, 5, params({1, 1}, {2, 2}, {1, 1}, 1), true},
  };
}

// Larger f32 cases: batch-parallel GEMMs, threaded GEMMs (batch 1) and the threaded depthwise.
std::vector<ConvCase> large_cases() {
  return {
      {"lenet_conv2_batch", 16, 6, 14, 14, 16, 5, 5, params({1, 1}, {0, 0}, {1, 1}, 1), true},
      {"resnet_3x3_batch", 6, 16, 16, 16, 32, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 1), true},
      {"single_image_threaded", 1, 32, 24, 24, 64, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), false},
      {"odd_batch", 3, 64, 24, 24, 64, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"pointwise_batch", 8, 32, 16, 16, 48, 1, 1, params({1, 1}, {0, 0}, {1, 1}, 1), true},
      {"depthwise_batch", 8, 32, 16, 16, 32, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 32), true},
      {"depthwise_stride2_batch", 4, 24, 15, 15, 24, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 24), false},
      // Channel-block depthwise kernels (depthwise_blocked.h): short planes, strides, a partial
      // last block, generic taps with dilation.
      {"depthwise_blocked_7x7", 3, 40, 7, 7, 40, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 40), true},
      {"depthwise_blocked_5x5_dilated_s2", 2, 20, 13, 12, 20, 5, 5, params({2, 2}, {2, 3}, {2, 1}, 20), false},
      {"depthwise_blocked_odd_nopad", 3, 17, 9, 11, 17, 3, 3, params({2, 3}, {0, 0}, {1, 1}, 17), true},
      // Stride-1 f32 convs with rows of >= 10 pixels take the direct kernels (conv2d_direct.h).
      {"direct_dilated_groups", 4, 4, 14, 14, 6, 3, 3, params({1, 1}, {2, 2}, {2, 2}, 2), true},
      {"direct_kw7_asym", 2, 3, 12, 20, 5, 3, 7, params({1, 1}, {1, 3}, {1, 1}, 1), true},
      {"direct_wide_blocks", 2, 2, 6, 40, 20, 5, 3, params({1, 1}, {2, 1}, {1, 1}, 1), false},
      {"direct_16_channels", 2, 3, 16, 16, 16, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"direct_fwd_gemm_input_grad", 2, 2, 12, 12, 3, 3, 3, params({1, 1}, {3, 3}, {1, 1}, 1), true},
      {"lenet_conv1_batch", 8, 1, 28, 28, 6, 5, 5, params({1, 1}, {2, 2}, {1, 1}, 1), true},
      // Narrow rows with output channels in multiples of 16: channel-vector tiles.
      {"chv_32ch_8x8", 4, 32, 8, 8, 32, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"chv_groups_dilated", 2, 8, 6, 9, 32, 3, 3, params({1, 1}, {1, 2}, {1, 2}, 2), true},
      {"chv_pixel_tail", 2, 3, 4, 22, 16, 3, 3, params({1, 1}, {0, 0}, {1, 1}, 1), false},
      // Channel-vector kernels (conv2d_chv.h): strided rows split by phase, uneven pixel tiles,
      // two-input-channel weight-gradient tiles, 5x5 and wider channel blocks.
      {"chv_stride2_odd_width", 3, 16, 13, 15, 32, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 1), true},
      {"chv_stride21_dilated", 2, 16, 11, 12, 16, 3, 3, params({2, 1}, {1, 2}, {1, 2}, 1), false},
      {"chv_5x5_stride2", 2, 8, 13, 13, 16, 5, 5, params({2, 2}, {2, 2}, {1, 1}, 1), true},
      {"chv_two_channel_tiles", 2, 6, 9, 29, 16, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"chv_groups_two_channel_tiles", 2, 8, 7, 17, 32, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 2), false},
      {"chv_64ch_7x7", 3, 32, 7, 7, 64, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"chv_64ch_stride2_7x7", 3, 64, 14, 13, 64, 3, 3, params({2, 2}, {1, 1}, {1, 1}, 1), false},
      {"chv_phases_groups_dilated", 2, 32, 11, 10, 32, 3, 3, params({2, 3}, {0, 2}, {2, 1}, 2), true},
      {"chv_stride2_even_width_pad2", 2, 16, 10, 12, 16, 5, 5, params({2, 2}, {2, 2}, {1, 1}, 1), false},
      // Winograd F(2x2, 3x3) (winograd.h; needs two images per thread): odd output sizes (partial
      // tiles), padding 0 and 2, output channels in one or several vectors, bias.
      {"winograd_odd_sizes", 5, 16, 9, 11, 32, 3, 3, params({1, 1}, {1, 1}, {1, 1}, 1), true},
      {"winograd_64_to_48_pad0", 4, 64, 8, 7, 48, 3, 3, params({1, 1}, {0, 0}, {1, 1}, 1), false},
      {"winograd_pad2", 4, 16, 6, 5, 16, 3, 3, params({1, 1}, {2, 2}, {1, 1}, 1), true},
  };
}

std::vector<double> vec(const Tensor& t) { return t.defined() ? t.to_vector<double>() : std::vector<double>{}; }

// Leaves NaN-filled blocks of `numel` floats in the caching allocator, so that a kernel that fails
// to write part of a fresh output (which the allocator hands out uninitialised) shows up as NaN.
void poison_allocator(int64_t numel) {
  std::vector<Tensor> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(full({numel}, NAN));
}

void check_forward(const ConvCase& c, DType dt, double rtol, double atol) {
  Tensor x = make_input(c, dt, 7), w = make_weight(c, dt, 7), b = make_bias(c, dt, 7);
  RefConv ref(c);
  Tensor want = from_vector(ref.forward(vec(x), vec(w), vec(b)), {c.n, c.o, ref.oh, ref.ow});
  Tensor got = conv2d(x, w, b, c.p);
  EXPECT_TRUE(AllClose(got.to(DType::F64), want, rtol, atol)) << c.name;
}

TEST(Conv2d, ForwardMatchesNaiveSmall) {
  for (const ConvCase& c : small_cases()) {
    check_forward(c, DType::F64, 1e-12, 1e-12);
    check_forward(c, DType::F32, 1e-5, 1e-5);
  }
}

TEST(Conv2d, ForwardAndBackwardMatchNaiveLarge) {
  set_num_threads(2);
  for (const ConvCase& c : large_cases()) {
    check_forward(c, DType::F32, 1e-4, 1e-4);
    Tensor x = make_input(c, DType::F32, 11).set_requires_grad();
    Tensor w = make_weight(c, DType::F32, 11).set_requires_grad();
    Tensor b = c.bias ? make_bias(c, DType::F32, 11).set_requires_grad() : Tensor();
    Tensor y = conv2d(x, w, b, c.p);
    Generator g(5);
    Tensor gy = randn(y.shape(), DType::F32, &g);
    poison_allocator(x.numel());
    y.backward(gy);
    // Adjoint of the naive loops.
    RefConv ref(c);
    std::vector<double> xv = vec(x), wv = vec(w), gyv = vec(gy);
    std::vector<double> gx(xv.size(), 0.0), gw(wv.size(), 0.0), gb(c.o, 0.0);
    ref.each([&](int64_t xi, int64_t wi, int64_t yi) {
      gx[xi] += gyv[yi] * wv[wi];
      gw[wi] += gyv[yi] * xv[xi];
    });
    for (size_t k = 0; k < gyv.size(); ++k) gb[(k / (ref.oh * ref.ow)) % c.o] += gyv[k];
    EXPECT_TRUE(AllClose(x.grad().to(DType::F64), from_vector(gx, x.shape()), 1e-4, 1e-3)) << c.name << " input grad";
    EXPECT_TRUE(AllClose(w.grad().to(DType::F64), from_vector(gw, w.shape()), 1e-4, 1e-3)) << c.name << " weight grad";
    if (c.bias) {
      EXPECT_TRUE(AllClose(b.grad().to(DType::F64), from_vector(gb, b.shape()), 1e-4, 1e-3)) << c.name << " bias grad";
    }
  }
}

TEST(Conv2d, Gradcheck) {
  for (const ConvCase& c : small_cases()) {
    Tensor x = make_input(c, DType::F64, 3).set_requires_grad();
    Tensor w = make_weight(c, DType::F64, 3).set_requires_grad();
    Tensor b = c.bias ? make_bias(c, DType::F64, 3).set_requires_grad() : Tensor();
    Conv2dParams p = c.p;
    auto f = [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); };
    GradcheckResult r = gradcheck(f, {x, w, b});
    EXPECT_TRUE(r.ok) << c.name << ": " << r.message;
  }
}

TEST(Conv2d, GradOnlyForInputsThatRequireIt) {
  ConvCase c = small_cases()[0];
  Tensor x = make_input(c, DType::F64, 1);  // like a network's first layer: no input gradient
  Tensor w = make_weight(c, DType::F64, 1).set_requires_grad();
  Tensor b = make_bias(c, DType::F64, 1);
  auto f = [&](const std::vector<Tensor>& in) { return conv2d(x, in[0], b, c.p); };
  GradcheckResult r = gradcheck(f, {w});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_FALSE(x.grad().defined());
  Tensor x2 = make_input(c, DType::F64, 1).set_requires_grad();
  auto f2 = [&](const std::vector<Tensor>& in) { return conv2d(in[0], make_weight(c, DType::F64, 1), b, c.p); };
  r = gradcheck(f2, {x2});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Conv2d, UnbatchedInputAndNonContiguousOperands) {
  ConvCase c = small_cases()[0];
  Tensor x = make_input(c, DType::F64, 2), w = make_weight(c, DType::F64, 2), b = make_bias(c, DType::F64, 2);
  Tensor full = conv2d(x, w, b, c.p);
  Tensor one = conv2d(x.select(0, 1), w, b, c.p);
  EXPECT_EQ(one.shape(), (Shape{c.o, full.size(2), full.size(3)}));
  EXPECT_TRUE(AllClose(one, full.select(0, 1), 1e-12, 1e-12));
  // A transposed view (H and W swapped twice) is not contiguous.
  Tensor xt = x.transpose(2, 3).contiguous().transpose(2, 3);
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_TRUE(AllClose(conv2d(xt, w, b, c.p), full, 1e-12, 1e-12));
}

template <typename F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << parts[0];
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message '" << msg << "' lacks '" << p << "'";
  }
}

TEST(Conv2d, Errors) {
  Tensor x = zeros({2, 3, 8, 8}), w = zeros({6, 4, 3, 3});
  expect_error([&] { conv2d(x, w); }, {"conv2d", "[2, 3, 8, 8]", "[6, 4, 3, 3]", "3 channels", "expects 4"});
  expect_error([&] { conv2d(zeros({2, 6, 8, 8}), zeros({6, 3, 3, 3}), Tensor(), params({1, 1}, {0, 0}, {1, 1}, 4)); },
               {"conv2d", "groups 4", "6 input channels"});
  expect_error([&] { conv2d(zeros({2, 4, 8, 8}), zeros({6, 1, 3, 3}), Tensor(), params({1, 1}, {0, 0}, {1, 1}, 4)); },
               {"conv2d", "groups 4", "6 output channels"});
  expect_error([&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5})); },
               {"conv2d", "larger than the padded input", "[1, 1, 4, 4]"});
  expect_error([&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), Tensor(), params({1, 1}, {0, 0}, {2, 2}, 1)); },
               {"conv2d", "larger than the padded input"});
  expect_error([&] { conv2d(zeros({1, 2, 4, 4}), zeros({3, 2, 3, 3}), zeros({4})); }, {"conv2d", "bias", "[4]"});
  expect_error([&] { conv2d(zeros({1, 2, 4, 4}), zeros({3, 2, 3, 3}, DType::F64)); }, {"conv2d", "f32", "f64"});
  expect_error([&] { conv2d(zeros({4, 4}), zeros({3, 2, 3, 3})); }, {"conv2d", "[4, 4]"});
  expect_error([&] { conv2d(zeros({1, 2, 4, 4}), zeros({3, 2, 3, 3}), Tensor(), params({0, 1}, {0, 0}, {1, 1}, 1)); },
               {"conv2d", "stride"});
  // An empty batch gives an empty output and zero weight gradients.
  Tensor we = ones({2, 3, 3, 3}).set_requires_grad();
  Tensor ye = conv2d(zeros({0, 3, 8, 8}), we, Tensor(), params({1, 1}, {1, 1}, {1, 1}, 1));
  EXPECT_EQ(ye.shape(), (Shape{0, 2, 8, 8}));
  ye.backward(zeros({0, 2, 8, 8}));
  EXPECT_TRUE(AllClose(we.grad(), zeros({2, 3, 3, 3}), 0, 0));
  // 5x5 with padding 2 fits a 1x1 input (padded to 5x5).
  EXPECT_EQ(conv2d(zeros({1, 1, 1, 1}), zeros({1, 1, 5, 5}), Tensor(), params({1, 1}, {2, 2}, {1, 1}, 1)).shape(),
            (Shape{1, 1, 1, 1}));
}

// ---------------------------------------------------------------- pooling

struct PoolCase {
  std::string name;
  int64_t n, c, h, w;
  std::array<int64_t, 2> k, s, pad;
};

std::vector<PoolCase> pool_cases() {
  return {
      {"2x2", 2, 3, 6, 8, {2, 2}, {0, 0}, {0, 0}},
      {"2x2_odd_input", 1, 2, 7, 5, {2, 2}, {2, 2}, {0, 0}},
      {"2x2_wide_rows", 1, 2, 4, 40, {2, 2}, {0, 0}, {0, 0}},
      {"2x2_odd_wide_rows", 1, 1, 5, 37, {2, 2}, {0, 0}, {0, 0}},
      {"3x3_s2_p1", 2, 2, 7, 6, {3, 3}, {2, 2}, {1, 1}},
      {"3x2_s12_p10", 1, 3, 5, 6, {3, 2}, {1, 2}, {1, 0}},
      {"overlapping_3x3_s1", 1, 2, 5, 5, {3, 3}, {1, 1}, {0, 0}},
  };
}

// Naive pooling over the window clipped to the input; for avg, the divisor follows count_include_pad.
std::vector<double> ref_pool(const PoolCase& c, const std::vector<double>& x, bool max, bool include_pad,
                             int64_t& oh, int64_t& ow) {
  const int64_t sh = c.s[0] ? c.s[0] : c.k[0], sw = c.s[1] ? c.s[1] : c.k[1];
  oh = (c.h + 2 * c.pad[0] - c.k[0]) / sh + 1;
  ow = (c.w + 2 * c.pad[1] - c.k[1]) / sw + 1;
  std::vector<double> y;
  for (int64_t p = 0; p < c.n * c.c; ++p)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -INFINITY, sum = 0;
        int64_t count = 0;
        for (int64_t a = 0; a < c.k[0]; ++a)
          for (int64_t b = 0; b < c.k[1]; ++b) {
            const int64_t ih = i * sh - c.pad[0] + a, iw = j * sw - c.pad[1] + b;
            if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
            const double v = x[(p * c.h + ih) * c.w + iw];
            best = std::max(best, v);
            sum += v;
            ++count;
          }
        y.push_back(max ? best : sum / (include_pad ? c.k[0] * c.k[1] : count));
      }
  return y;
}

// Distinct values (spaced far beyond the finite-difference step), so max pool has no ties.
Tensor distinct_input(const PoolCase& c, uint64_t seed) {
  Generator g(seed);
  Tensor perm = randperm(c.n * c.c * c.h * c.w, &g).to(DType::F64);
  return kernels::add_scalar(kernels::mul_scalar(perm, 0.25), -3.0).reshape({c.n, c.c, c.h, c.w});
}

}  // namespace

TEST(Pool2d, MaxPoolForwardMatchesNaive) {
  for (const PoolCase& c : pool_cases()) {
    for (DType dt : {DType::F64, DType::F32}) {
      Tensor x = distinct_input(c, 4).to(dt);
      int64_t oh = 0, ow = 0;
      std::vector<double> ref = ref_pool(c, vec(x), true, false, oh, ow);
      Tensor want = from_vector(ref, {c.n, c.c, oh, ow});
      EXPECT_TRUE(AllClose(max_pool2d(x, c.k, c.s, c.pad).to(DType::F64), want, 0, 0)) << c.name;
    }
  }
}

TEST(Pool2d, MaxPoolGradcheck) {
  for (const PoolCase& c : pool_cases()) {
    Tensor x = distinct_input(c, 9).set_requires_grad();
    auto f = [&](const std::vector<Tensor>& in) { return max_pool2d(in[0], c.k, c.s, c.pad); };
    GradcheckResult r = gradcheck(f, {x});
    EXPECT_TRUE(r.ok) << c.name << ": " << r.message;
  }
}

TEST(Pool2d, MaxPoolF32GradientMatchesF64) {
  // The f32 2x2 kernel is vectorised separately; its argmax must agree with the f64 one.
  for (const PoolCase& c : pool_cases()) {
    Tensor x64 = distinct_input(c, 12).set_requires_grad();
    Tensor x32 = x64.detach().to(DType::F32).set_requires_grad();
    Tensor y64 = max_pool2d(x64, c.k, c.s, c.pad), y32 = max_pool2d(x32, c.k, c.s, c.pad);
    Generator g(1);
    Tensor gy = randn(y64.shape(), DType::F64, &g);
    y64.backward(gy);
    y32.backward(gy.to(DType::F32));
    EXPECT_TRUE(AllClose(x32.grad().to(DType::F64), x64.grad(), 1e-6, 1e-6)) << c.name;
  }
}

TEST(Pool2d, MaxPoolPropagatesNaN) {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = tensor({1, NAN, 3, 2}, {1, 1, 2, 2}, dt);
    EXPECT_TRUE(std::isnan(max_pool2d(x, {2, 2}).item()));
    EXPECT_TRUE(std::isnan(max_pool2d(x, {2, 2}, {1, 1}).item()));
  }
}

TEST(Pool2d, AvgPoolForwardMatchesNaive) {
  for (const PoolCase& c : pool_cases())
    for (bool include_pad : {true, false}) {
      Tensor x = distinct_input(c, 5);
      int64_t oh = 0, ow = 0;
      std::vector<double> ref = ref_pool(c, vec(x), false, include_pad, oh, ow);
      Tensor want = from_vector(ref, {c.n, c.c, oh, ow});
      EXPECT_TRUE(AllClose(avg_pool2d(x, c.k, c.s, c.pad, include_pad), want, 1e-12, 1e-12))
          << c.name << " count_include_pad=" << include_pad;
      EXPECT_TRUE(AllClose(avg_pool2d(x.to(DType::F32), c.k, c.s, c.pad, include_pad).to(DType::F64), want, 1e-5, 1e-5))
          << c.name;
    }
}

TEST(Pool2d, AvgPoolGradcheck) {
  for (const PoolCase& c : pool_cases())
    for (bool include_pad : {true, false}) {
      Generator g(2);
      Tensor x = randn({c.n, c.c, c.h, c.w}, DType::F64, &g).set_requires_grad();
      auto f = [&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], c.k, c.s, c.pad, include_pad); };
      GradcheckResult r = gradcheck(f, {x});
      EXPECT_TRUE(r.ok) << c.name << " count_include_pad=" << include_pad << ": " << r.message;
    }
}

TEST(Pool2d, AdaptiveAvgPoolMatchesNaive) {
  // (in_h, in_w) -> (out_h, out_w): divisible, non-divisible (overlapping windows), global, upsampling.
  const int64_t cases[][4] = {{8, 8, 4, 4}, {7, 7, 3, 3}, {5, 6, 2, 4}, {4, 5, 1, 1}, {3, 2, 5, 3}};
  for (auto& cs : cases) {
    const int64_t H = cs[0], W = cs[1], OH = cs[2], OW = cs[3];
    Generator g(3);
    Tensor x = randn({2, 3, H, W}, DType::F64, &g);
    std::vector<double> xv = vec(x), want;
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          const int64_t hs = (i * H) / OH, he = ((i + 1) * H + OH - 1) / OH;
          const int64_t ws = (j * W) / OW, we = ((j + 1) * W + OW - 1) / OW;
          double s = 0;
          for (int64_t a = hs; a < he; ++a)
            for (int64_t b = ws; b < we; ++b) s += xv[(p * H + a) * W + b];
          want.push_back(s / ((he - hs) * (we - ws)));
        }
    EXPECT_TRUE(AllClose(adaptive_avg_pool2d(x, {OH, OW}), from_vector(want, {2, 3, OH, OW}), 1e-12, 1e-12))
        << H << "x" << W << " -> " << OH << "x" << OW;
    Tensor xg = x.clone().set_requires_grad();
    auto f = [&](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], {OH, OW}); };
    GradcheckResult r = gradcheck(f, {xg});
    EXPECT_TRUE(r.ok) << H << "x" << W << " -> " << OH << "x" << OW << ": " << r.message;
  }
}

TEST(Pool2d, LargeBatchThreadedMatchesSingleThreaded) {
  Generator g(8);
  Tensor x = randn({16, 8, 28, 28}, DType::F32, &g).set_requires_grad();
  Tensor gy = randn({16, 8, 14, 14}, DType::F32, &g);
  auto run = [&](int threads) {
    set_num_threads(threads);
    x.set_grad(Tensor());
    Tensor y = max_pool2d(x, {2, 2});
    y.backward(gy);
    Tensor a = avg_pool2d(x.detach(), {3, 3}, {2, 2}, {1, 1});
    Tensor ad = adaptive_avg_pool2d(x.detach(), {5, 5});
    return std::vector<Tensor>{y.detach(), x.grad(), a, ad};
  };
  auto one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(AllClose(one[i], two[i], 0, 0)) << "output " << i;
}

TEST(Pool2d, Errors) {
  expect_error([] { max_pool2d(zeros({1, 1, 4, 4}), {3, 3}, {1, 1}, {2, 2}); }, {"max_pool2d", "padding", "half"});
  expect_error([] { max_pool2d(zeros({1, 1, 2, 2}), {3, 3}); }, {"max_pool2d", "larger", "[1, 1, 2, 2]"});
  expect_error([] { avg_pool2d(zeros({4, 4}), {2, 2}); }, {"avg_pool2d", "[4, 4]"});
  expect_error([] { max_pool2d(zeros({1, 1, 4, 4}), {0, 2}); }, {"max_pool2d", "kernel"});
  expect_error([] { adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {0, 2}); }, {"adaptive_avg_pool2d", "output size"});
  // Unbatched [C, H, W] input works like a batch of one.
  EXPECT_EQ(max_pool2d(zeros({3, 4, 4}), {2, 2}).shape(), (Shape{3, 2, 2}));
}
