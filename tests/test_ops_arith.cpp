#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

using Fn = qslim::testing::GradFn;
using qslim::testing::expect_gradcheck;
using qslim::testing::leaf;
using qslim::testing::randn64;

// Values bounded away from zero: sign(u) * (0.5 + |u|).
Tensor away_from_zero(const Shape& s, uint64_t seed) {
  Tensor u = randn64(s, seed);
  double* p = u.data<double>();
  for (int64_t i = 0; i < u.numel(); ++i) p[i] = (p[i] < 0 ? -1 : 1) * (0.5 + std::abs(p[i]));
  return u;
}

Tensor positive(const Shape& s, uint64_t seed) { return abs(away_from_zero(s, seed)); }

void expect_mentions(const std::string& msg, const std::vector<std::string>& parts) {
  ASSERT_FALSE(msg.empty()) << "expected a qslim::Error";
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

const std::vector<std::pair<Shape, Shape>> kBroadcastCases = {
    {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {3, 1}}, {{2, 3, 4}, {4}},
    {{2, 3, 4}, {}},        {{3, 1}, {2, 3, 4}}, {{}, {2, 3, 4}},
    {{2, 1, 4}, {3, 1}},
};

}  // namespace

// ------------------------------------------------------------------ forward values

TEST(OpsArith, BinaryForwardBroadcasts) {
  Tensor a = tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = tensor({10, 20, 30}, {3});
  EXPECT_TRUE(AllClose(add(a, b), tensor({11, 22, 33, 14, 25, 36}, {2, 3})));
  EXPECT_TRUE(AllClose(sub(a, b), tensor({-9, -18, -27, -6, -15, -24}, {2, 3})));
  EXPECT_TRUE(AllClose(mul(a, b), tensor({10, 40, 90, 40, 100, 180}, {2, 3})));
  EXPECT_TRUE(AllClose(div(b, a), tensor({10, 10, 10, 2.5, 4, 5}, {2, 3})));
  Tensor col = tensor({2, -1}, {2, 1});
  EXPECT_TRUE(AllClose(a * col, tensor({2, 4, 6, -4, -5, -6}, {2, 3})));
  EXPECT_TRUE(AllClose(a - scalar_tensor(1), tensor({0, 1, 2, 3, 4, 5}, {2, 3})));
  // Non-contiguous operand.
  Tensor at = a.t();  // [3, 2]
  EXPECT_TRUE(AllClose(add(at, tensor({100, 200}, {2})), tensor({101, 204, 102, 205, 103, 206}, {3, 2})));
}

TEST(OpsArith, ScalarAndOperatorForward) {
  Tensor a = tensor({1, -2, 4}, {3}, DType::F64);
  EXPECT_TRUE(AllClose(a + 1.5, tensor({2.5, -0.5, 5.5}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(a - 1.0, tensor({0, -3, 3}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(a * 3.0, tensor({3, -6, 12}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(a / 4.0, tensor({0.25, -0.5, 1}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(2.0 * a, tensor({2, -4, 8}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(1.0 + a, tensor({2, -1, 5}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(1.0 - a, tensor({0, 3, -3}, {3}, DType::F64)));
  EXPECT_TRUE(AllClose(-a, tensor({-1, 2, -4}, {3}, DType::F64)));
}

TEST(OpsArith, IntegerArithmetic) {
  Tensor a = from_vector<int32_t>({1, -2, 3, 7}, {2, 2});
  Tensor b = from_vector<int32_t>({10, 20}, {2});
  EXPECT_EQ(add(a, b).to_vector<int32_t>(), (std::vector<int32_t>{11, 18, 13, 27}));
  EXPECT_EQ(sub(a, b).to_vector<int32_t>(), (std::vector<int32_t>{-9, -22, -7, -13}));
  EXPECT_EQ(mul(a, b).to_vector<int32_t>(), (std::vector<int32_t>{10, -40, 30, 140}));
  EXPECT_EQ(add(a, b).dtype(), DType::I32);
  EXPECT_EQ((a * 3.0).to_vector<int32_t>(), (std::vector<int32_t>{3, -6, 9, 21}));
  EXPECT_EQ((a + -4.0).to_vector<int32_t>(), (std::vector<int32_t>{-3, -6, -1, 3}));
  EXPECT_EQ(neg(a).to_vector<int32_t>(), (std::vector<int32_t>{-1, 2, -3, -7}));
  EXPECT_EQ(abs(a).to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 3, 7}));
  EXPECT_EQ(sign(a).to_vector<int32_t>(), (std::vector<int32_t>{1, -1, 1, 1}));
  EXPECT_EQ(clamp(a, -1.5, 3.5).to_vector<int32_t>(), (std::vector<int32_t>{1, -1, 3, 3}));
  EXPECT_EQ(maximum(a, b).to_vector<int32_t>(), (std::vector<int32_t>{10, 20, 10, 20}));
  Tensor i64 = from_vector<int64_t>({5, 6}, {2});
  Tensor& r = add_(i64, from_vector<int64_t>({1, 1}, {2}));
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{6, 7}));
  mul_(i64, 2.0);
  EXPECT_EQ(i64.to_vector<int64_t>(), (std::vector<int64_t>{12, 14}));
  // Fractional scalars would be truncated silently: refused instead.
  expect_mentions(error_of([&] { mul(a, 0.5); }), {"mul", "0.5", "i32"});
  expect_mentions(error_of([&] { a / 2.0; }), {"mul", "i32"});
  expect_mentions(error_of([&] { div(a, a); }), {"div", "i32"});
  expect_mentions(error_of([&] { exp(a); }), {"exp", "i32"});
}

TEST(OpsArith, UnaryForwardValues) {
  Tensor x = tensor({0.25, 1, 4, 9}, {4}, DType::F64);
  EXPECT_TRUE(AllClose(exp(x), tensor({std::exp(0.25), std::exp(1.0), std::exp(4.0), std::exp(9.0)}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(log(x), tensor({std::log(0.25), 0, std::log(4.0), std::log(9.0)}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(sqrt(x), tensor({0.5, 1, 2, 3}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(pow(x, 2), tensor({0.0625, 1, 16, 81}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(pow(x, 0.5), tensor({0.5, 1, 2, 3}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(pow(x, -1.5), tensor({8, 1, 0.125, 1.0 / 27}, {4}, DType::F64)));
  EXPECT_TRUE(AllClose(pow(x, 0), tensor({1, 1, 1, 1}, {4}, DType::F64)));
  Tensor y = tensor({-2.5, -0.5, 0, 0.3, 3}, {5});
  EXPECT_TRUE(AllClose(abs(y), tensor({2.5, 0.5, 0, 0.3, 3}, {5})));
  EXPECT_TRUE(AllClose(sign(y), tensor({-1, -1, 0, 1, 1}, {5})));
  EXPECT_TRUE(AllClose(clamp(y, -1, 1), tensor({-1, -0.5, 0, 0.3, 1}, {5})));
  // f32 goes through the vectorised (Eigen) path for longer inputs too.
  Tensor big = arange(0.5, 400.5, 1.0);
  auto e = exp(mul(big, 0.01)).to_vector<float>(), l = log(big).to_vector<float>(), s = sqrt(big).to_vector<float>();
  for (int i = 0; i < 400; ++i) {
    double v = 0.5 + i;
    EXPECT_NEAR(e[i], std::exp(0.01 * v), 1e-6 * std::exp(0.01 * v));
    EXPECT_NEAR(l[i], std::log(v), 1e-6 * std::abs(std::log(v)) + 1e-7);
    EXPECT_NEAR(s[i], std::sqrt(v), 1e-6 * std::sqrt(v));
  }
}

TEST(OpsArith, RoundIsHalfToEven) {
  Tensor x = tensor({-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, 2.6, -2.6}, {9});
  EXPECT_EQ(round(x).to_vector<float>(), (std::vector<float>{-2, -2, -0, 0, 2, 2, 2, 3, -3}));
  EXPECT_EQ(round(x.to(DType::F64)).to_vector<double>(), (std::vector<double>{-2, -2, -0, 0, 2, 2, 2, 3, -3}));
}

TEST(OpsArith, MaximumMinimumPropagateNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor a = from_vector<float>({1, nan, 3, 2}, {4});
  Tensor b = from_vector<float>({2, 0, nan, 2}, {4});
  auto mx = maximum(a, b).to_vector<float>(), mn = minimum(a, b).to_vector<float>();
  EXPECT_EQ(mx[0], 2);
  EXPECT_TRUE(std::isnan(mx[1]));
  EXPECT_TRUE(std::isnan(mx[2]));
  EXPECT_EQ(mx[3], 2);
  EXPECT_EQ(mn[0], 1);
  EXPECT_TRUE(std::isnan(mn[1]));
  EXPECT_TRUE(std::isnan(mn[2]));
  EXPECT_TRUE(std::isnan(clamp(from_vector<float>({nan}, {1}), 0, 1).item()));
}

// ------------------------------------------------------------------ gradients

TEST(OpsArith, GradcheckBinaryBroadcasting) {
  using BinFn = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<const char*, BinFn>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
  };
  uint64_t seed = 1;
  for (const auto& [name, op] : ops) {
    for (const auto& [sa, sb] : kBroadcastCases) {
      Tensor a = leaf(randn64(sa, seed++));
      Tensor b = leaf(std::string(name) == "div" ? away_from_zero(sb, seed++) : randn64(sb, seed++));
      expect_gradcheck([op](const std::vector<Tensor>& in) { return op(in[0], in[1]); }, {a, b},
                       std::string(name) + " " + shape_str(sa) + " with " + shape_str(sb));
      // Only one side requiring grad.
      Tensor b_const = b.detach();
      expect_gradcheck([op, b_const](const std::vector<Tensor>& in) { return op(in[0], b_const); }, {a},
                       std::string(name) + " (b constant) " + shape_str(sa));
    }
  }
}

TEST(OpsArith, GradcheckSameTensorTwice) {
  expect_gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[0]); }, {leaf(randn64({3, 2}, 7))},
                   "x*x");
  expect_gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[0] * in[0]); },
                   {leaf(away_from_zero({3, 2}, 8))}, "x/(x*x)");
}

TEST(OpsArith, GradcheckUnary) {
  struct Case {
    const char* name;
    Fn f;
    Tensor x;
  };
  // Clamp inputs: bounded away from the clamp edges -0.7 and 0.9.
  Tensor cx = tensor({-2, -0.8, -0.6, 0, 0.3, 0.8, 1.0, 2.5}, {2, 4}, DType::F64);
  // Round/sign inputs away from rounding boundaries and zero.
  Tensor rx = tensor({-2.3, -1.8, -0.2, 0.1, 0.7, 1.2, 2.9, 3.4}, {2, 4}, DType::F64);
  const std::vector<Case> cases = {
      {"neg", [](const std::vector<Tensor>& in) { return neg(in[0]); }, randn64({2, 3}, 11)},
      {"add_scalar", [](const std::vector<Tensor>& in) { return in[0] + 2.5; }, randn64({2, 3}, 12)},
      {"mul_scalar", [](const std::vector<Tensor>& in) { return in[0] * -1.5; }, randn64({2, 3}, 13)},
      {"rsub_scalar", [](const std::vector<Tensor>& in) { return 3.0 - in[0]; }, randn64({2, 3}, 14)},
      {"exp", [](const std::vector<Tensor>& in) { return exp(in[0]); }, randn64({2, 3}, 15)},
      {"log", [](const std::vector<Tensor>& in) { return log(in[0]); }, positive({2, 3}, 16)},
      {"sqrt", [](const std::vector<Tensor>& in) { return sqrt(in[0]); }, positive({2, 3}, 17)},
      {"pow2", [](const std::vector<Tensor>& in) { return pow(in[0], 2.0); }, randn64({2, 3}, 18)},
      {"pow3", [](const std::vector<Tensor>& in) { return pow(in[0], 3.0); }, randn64({2, 3}, 19)},
      {"pow0.5", [](const std::vector<Tensor>& in) { return pow(in[0], 0.5); }, positive({2, 3}, 20)},
      {"pow-1.5", [](const std::vector<Tensor>& in) { return pow(in[0], -1.5); }, positive({2, 3}, 21)},
      {"pow-1", [](const std::vector<Tensor>& in) { return pow(in[0], -1.0); }, away_from_zero({2, 3}, 22)},
      {"pow0", [](const std::vector<Tensor>& in) { return pow(in[0], 0.0); }, randn64({2, 3}, 23)},
      {"abs", [](const std::vector<Tensor>& in) { return abs(in[0]); }, away_from_zero({2, 3}, 24)},
      {"clamp", [](const std::vector<Tensor>& in) { return clamp(in[0], -0.7, 0.9); }, cx},
      {"sign", [](const std::vector<Tensor>& in) { return sign(in[0]); }, rx},
      {"round", [](const std::vector<Tensor>& in) { return round(in[0]); }, rx},
      {"scalar_shaped_exp", [](const std::vector<Tensor>& in) { return exp(in[0]); }, randn64({}, 25)},
  };
  for (const auto& c : cases) expect_gradcheck(c.f, {leaf(c.x.clone())}, c.name);
}

TEST(OpsArith, GradientConventionsAtEdges) {
  // clamp: gradient 1 on the closed interval [lo, hi] (PyTorch), 0 outside.
  Tensor x = leaf(tensor({-1, -0.5, 0, 0.5, 1}, {5}, DType::F64));
  clamp(x, -0.5, 0.5).backward(ones({5}, DType::F64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 1, 1, 0}));
  // abs: 0 at 0.
  Tensor z = leaf(tensor({-2, 0, 3}, {3}, DType::F64));
  abs(z).backward(ones({3}, DType::F64));
  EXPECT_EQ(z.grad().to_vector<double>(), (std::vector<double>{-1, 0, 1}));
  // maximum/minimum split ties evenly.
  Tensor a = leaf(tensor({1, 2, 3}, {3}, DType::F64));
  Tensor b = leaf(tensor({2, 2, 1}, {3}, DType::F64));
  maximum(a, b).backward(ones({3}, DType::F64));
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 0.5, 0}));
  Tensor c = leaf(tensor({1, 2, 3}, {3}, DType::F64));
  minimum(c, scalar_tensor(2, DType::F64)).backward(ones({3}, DType::F64));
  EXPECT_EQ(c.grad().to_vector<double>(), (std::vector<double>{1, 0.5, 0}));
  // sign/round: zero gradients that still reach the leaf.
  Tensor r = leaf(tensor({0.3, 1.7}, {2}, DType::F64));
  round(r).backward(ones({2}, DType::F64));
  EXPECT_EQ(r.grad().to_vector<double>(), (std::vector<double>{0, 0}));
}

TEST(OpsArith, F32BackwardMatchesF64) {
  Tensor a64 = randn64({4, 5}, 31), b64 = away_from_zero({5}, 32);
  Tensor a32 = leaf(a64.to(DType::F32)), b32 = leaf(b64.to(DType::F32));
  Tensor a = leaf(a64.clone()), b = leaf(b64.clone());
  Tensor g = randn64({4, 5}, 33);
  div(mul(a, b), exp(b)).backward(g);
  div(mul(a32, b32), exp(b32)).backward(g.to(DType::F32));
  EXPECT_TRUE(AllClose(a32.grad(), a.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(b32.grad(), b.grad(), 1e-4, 1e-5));
}

// ------------------------------------------------------------------ in place

namespace {
using InplaceFn = std::function<void(Tensor&, const Tensor&)>;
using OutFn = std::function<Tensor(const Tensor&, const Tensor&)>;

struct InplaceCase {
  const char* name;
  InplaceFn inplace;
  OutFn out_of_place;
  bool positive_b;
};

const std::vector<InplaceCase> kInplaceCases = {
    {"add_", [](Tensor& a, const Tensor& b) { add_(a, b); }, [](const Tensor& a, const Tensor& b) { return add(a, b); },
     false},
    {"sub_", [](Tensor& a, const Tensor& b) { sub_(a, b); }, [](const Tensor& a, const Tensor& b) { return sub(a, b); },
     false},
    {"mul_", [](Tensor& a, const Tensor& b) { mul_(a, b); }, [](const Tensor& a, const Tensor& b) { return mul(a, b); },
     false},
    {"div_", [](Tensor& a, const Tensor& b) { div_(a, b); }, [](const Tensor& a, const Tensor& b) { return div(a, b); },
     true},
    {"mul_scalar_", [](Tensor& a, const Tensor&) { mul_(a, -2.5); },
     [](const Tensor& a, const Tensor&) { return mul(a, -2.5); }, false},
    {"add_scalar_", [](Tensor& a, const Tensor&) { add_(a, 0.75); },
     [](const Tensor& a, const Tensor&) { return add(a, 0.75); }, false},
};
}  // namespace

TEST(OpsArith, InplaceEqualsOutOfPlaceValuesAndGradients) {
  uint64_t seed = 100;
  for (const auto& c : kInplaceCases) {
    for (const Shape& sb : {Shape{2, 3, 4}, Shape{3, 1}, Shape{4}, Shape{}}) {
      const std::string what = std::string(c.name) + " with b " + shape_str(sb);
      Tensor x0 = randn64({2, 3, 4}, seed++);
      Tensor b0 = c.positive_b ? away_from_zero(sb, seed++) : randn64(sb, seed++);
      Tensor g = randn64({2, 3, 4}, seed++);
      // Out of place.
      Tensor x1 = leaf(x0.clone()), b1 = leaf(b0.clone());
      Tensor y1 = c.out_of_place(mul(x1, 1.0), b1);
      y1.backward(g);
      // In place on a non-leaf copy of x.
      Tensor x2 = leaf(x0.clone()), b2 = leaf(b0.clone());
      Tensor y2 = mul(x2, 1.0);
      auto fn_before = y2.grad_fn();
      c.inplace(y2, b2);
      EXPECT_NE(y2.grad_fn().get(), fn_before.get()) << what;
      EXPECT_TRUE(AllClose(y2, y1, 1e-12, 1e-12)) << what;
      y2.backward(g);
      EXPECT_TRUE(AllClose(x2.grad(), x1.grad(), 1e-12, 1e-12)) << what;
      if (b1.grad().defined() || b2.grad().defined()) {
        EXPECT_TRUE(AllClose(b2.grad(), b1.grad(), 1e-12, 1e-12)) << what;
      }
      // And against finite differences (also checks accumulation).
      InplaceFn inplace = c.inplace;
      expect_gradcheck(
          [inplace](const std::vector<Tensor>& in) {
            Tensor t = in[0].clone();
            inplace(t, in[1]);
            return t;
          },
          {leaf(x0.clone()), leaf(b0.clone())}, what);
    }
  }
}

TEST(OpsArith, InplaceOnTensorWithoutHistoryRecordsB) {
  // a does not require grad, b does: the in-place op gives a a history leading to b only.
  Tensor a = ones({2, 3}, DType::F64);
  Tensor b = leaf(tensor({1, 2, 3}, {3}, DType::F64));
  mul_(a, b);
  EXPECT_TRUE(a.requires_grad());
  EXPECT_FALSE(a.is_leaf());
  a.backward(ones({2, 3}, DType::F64));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
}

TEST(OpsArith, InplaceChainsHistory) {
  Tensor x = leaf(tensor({1, 2}, {2}, DType::F64));
  Tensor b = leaf(tensor({3, 4}, {2}, DType::F64));
  Tensor y = x.clone();
  add_(y, b);    // x + b
  mul_(y, 2.0);  // 2(x + b)
  mul_(y, y.detach().clone());  // 2(x+b) * c, c constant
  sub_(y, x);
  EXPECT_EQ(y.grad_fn()->name(), "sub_");
  y.backward(ones({2}, DType::F64));
  // d/dx = 2 * c - 1 with c = 2(x+b) = {8, 12}
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{15, 23}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{16, 24}));
}

TEST(OpsArith, InplaceWritesThroughViewsAndBumpsVersion) {
  Tensor base = zeros({2, 3});
  Tensor row = base.narrow(0, 1, 1);
  uint64_t v = base.version();
  add_(row, tensor({1, 2, 3}, {3}));
  EXPECT_GT(base.version(), v);
  EXPECT_EQ(base.to_vector<float>(), (std::vector<float>{0, 0, 0, 1, 2, 3}));
  Tensor col = base.t().narrow(0, 2, 1);  // strided view of column 2
  mul_(col, 10.0);
  EXPECT_EQ(base.to_vector<float>(), (std::vector<float>{0, 0, 0, 1, 2, 30}));
  Tensor exp_view = tensor({1}, {1}).expand({3});
  expect_mentions(error_of([&] { add_(exp_view, ones({3})); }), {"add_", "expanded", "[3]"});
}

TEST(OpsArith, InplaceOnLeafRequiringGradThrows) {
  Tensor w = leaf(ones({3}, DType::F64));
  expect_mentions(error_of([&] { add_(w, ones({3}, DType::F64)); }), {"add_", "leaf", "[3]"});
  expect_mentions(error_of([&] { mul_(w, 2.0); }), {"mul_", "leaf"});
  EXPECT_EQ(w.to_vector<double>(), (std::vector<double>{1, 1, 1}));
  {
    NoGradGuard ng;  // optimizer-style update
    sub_(w, full({3}, 0.5, DType::F64));
    div_(w, full({1}, 2.0, DType::F64));
  }
  EXPECT_EQ(w.to_vector<double>(), (std::vector<double>{0.25, 0.25, 0.25}));
  EXPECT_TRUE(w.is_leaf());
}

// Recording an in-place op on a view would leave the base's history without it: sum(base) would
// then give b no gradient at all. Refused with the op and the view's shape, before any write;
// without history (no input requires grad, or NoGradGuard) views are written as before.
TEST(OpsArith, InplaceWithHistoryOnAViewIsRefused) {
  Tensor x = leaf(randn64({2, 3}, 43));
  Tensor base = mul(x, 2.0);
  Tensor row = base.narrow(0, 1, 1);
  const Tensor b = leaf(ones({1, 3}, DType::F64));
  const std::vector<double> before = base.to_vector<double>();
  expect_mentions(error_of([&] { add_(row, b); }), {"add_", "view", "[1, 3]", "out-of-place"});
  expect_mentions(error_of([&] { mul_(row, 3.0); }), {"mul_", "view"});
  Tensor plain_row = zeros({2, 3}, DType::F64).narrow(0, 0, 1);
  expect_mentions(error_of([&] { sub_(plain_row, b); }), {"sub_", "view"});  // b would lose its gradient
  EXPECT_EQ(base.to_vector<double>(), before);
  {
    NoGradGuard ng;
    add_(row, b);
  }
  EXPECT_EQ(base.to_vector<double>()[3], before[3] + 1);
  // The out-of-place form gives both gradients.
  Tensor y = add(base.narrow(0, 1, 1), b);
  sum(y).backward();
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 2, 2, 2}));
}

TEST(OpsArith, ModifyingSavedTensorThenBackwardThrows) {
  Tensor x = leaf(randn64({3}, 41));
  // exp saves its output.
  Tensor y = exp(x);
  mul_(y, 2.0);
  expect_mentions(error_of([&] { y.backward(ones({3}, DType::F64)); }), {"exp", "modified in place"});
  // mul saves its inputs.
  Tensor a = x.clone();
  Tensor z = mul(a, x);
  add_(a, 1.0);
  expect_mentions(error_of([&] { z.backward(ones({3}, DType::F64)); }), {"mul", "modified in place"});
  // Squaring in place reads the operand it overwrites: refused rather than wrong.
  Tensor s = x.clone();
  mul_(s, s);
  EXPECT_THROW(s.backward(ones({3}, DType::F64)), Error);
}

// ------------------------------------------------------------------ errors

TEST(OpsArith, ShapeMismatchNamesOpAndShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  expect_mentions(error_of([&] { add(a, b); }), {"add", "[2, 3]", "[4]"});
  expect_mentions(error_of([&] { sub(a, b); }), {"sub", "[2, 3]", "[4]"});
  expect_mentions(error_of([&] { mul(a, b); }), {"mul", "[2, 3]", "[4]"});
  expect_mentions(error_of([&] { div(a, b); }), {"div", "[2, 3]", "[4]"});
  expect_mentions(error_of([&] { maximum(a, b); }), {"maximum", "[2, 3]", "[4]"});
  expect_mentions(error_of([&] { minimum(a, b); }), {"minimum", "[2, 3]", "[4]"});
  Tensor t = zeros({3});
  expect_mentions(error_of([&] { add_(t, zeros({2, 3})); }), {"add_", "[3]", "[2, 3]"});
  expect_mentions(error_of([&] { div_(a, b); }), {"div_", "[2, 3]", "[4]"});
}

TEST(OpsArith, DtypeMismatchNamesOpAndDtypes) {
  Tensor a = zeros({2}), b = zeros({2}, DType::F64);
  expect_mentions(error_of([&] { add(a, b); }), {"add", "f32", "f64"});
  expect_mentions(error_of([&] { mul(a, b); }), {"mul", "f32", "f64"});
  expect_mentions(error_of([&] { maximum(a, b); }), {"maximum", "f32", "f64"});
  expect_mentions(error_of([&] { mul_(a, b); }), {"mul_", "f32", "f64"});
  expect_mentions(error_of([&] { clamp(a, 1, 0); }), {"clamp", "1", "0"});
  expect_mentions(error_of([&] { sqrt(zeros({2}, DType::I64)); }), {"sqrt", "i64"});
}
