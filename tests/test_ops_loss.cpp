#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

using Fn = qslim::testing::GradFn;
using qslim::testing::expect_gradcheck;
using qslim::testing::leaf;
using qslim::testing::randn64;

using qslim::testing::expect_error;

Tensor targets(std::vector<int64_t> v) { return from_vector(v, {static_cast<int64_t>(v.size())}); }

// Reference per-sample loss in double straight from the definition.
std::vector<double> naive_ce(const Tensor& logits, const Tensor& target, double eps) {
  auto x = logits.to_vector<double>();
  auto t = target.to_vector<int64_t>();
  const int64_t N = logits.size(0), C = logits.size(1);
  std::vector<double> out(N);
  for (int64_t i = 0; i < N; ++i) {
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(x[i * C + c]);
    double nll = std::log(z) - x[i * C + t[i]], smooth = 0;
    for (int64_t c = 0; c < C; ++c) smooth += (std::log(z) - x[i * C + c]) / C;
    out[i] = (1 - eps) * nll + eps * smooth;
  }
  return out;
}

}  // namespace

TEST(Loss, CrossEntropyHandComputed) {
  // Row 0: lse = log(e + e^2 + e^3), target 2 -> nll = lse - 3.  Row 1: uniform logits -> nll = log 3.
  Tensor logits = tensor({1, 2, 3, 1, 1, 1}, {2, 3}, DType::F64);
  Tensor t = targets({2, 0});
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double nll0 = lse0 - 3, nll1 = std::log(3.0);
  EXPECT_NEAR(cross_entropy(logits, t).item(), (nll0 + nll1) / 2, 1e-14);
  EXPECT_NEAR(cross_entropy(logits, t).item(), 0.7531091266, 1e-9);  // PyTorch prints 0.7531
  EXPECT_NEAR(cross_entropy(logits, t, 0.0, Reduction::Sum).item(), nll0 + nll1, 1e-14);
  Tensor none = cross_entropy(logits, t, 0.0, Reduction::None);
  EXPECT_EQ(none.shape(), (Shape{2}));
  EXPECT_TRUE(AllClose(none, tensor({nll0, nll1}, {2}, DType::F64), 1e-14, 1e-14));
  // Label smoothing 0.1: (1 - eps) * nll + eps * mean_c(lse - x_c); row 0 mean_c(lse - x_c) = lse0 - 2,
  // row 1 = log 3. PyTorch: F.cross_entropy(..., label_smoothing=0.1) = 0.8031.
  const double eps = 0.1;
  const double s0 = (1 - eps) * nll0 + eps * (lse0 - 2), s1 = std::log(3.0);
  EXPECT_NEAR(cross_entropy(logits, t, eps).item(), (s0 + s1) / 2, 1e-14);
  EXPECT_NEAR(cross_entropy(logits, t, eps).item(), 0.8031091266, 1e-9);
  // f32 gives the same within float precision.
  EXPECT_NEAR(cross_entropy(logits.to(DType::F32), t, eps).item(), (s0 + s1) / 2, 1e-6);
}

TEST(Loss, CrossEntropyMatchesReferenceOnTrainingShape) {
  Generator gen(3);
  Tensor logits = mul(randn({128, 10}, DType::F32, &gen), 4.0);
  Tensor t = randint(0, 10, {128}, DType::I64, &gen);
  for (double eps : {0.0, 0.1}) {
    auto ref = naive_ce(logits, t, eps);
    double mean_ref = 0;
    for (double v : ref) mean_ref += v / 128;
    EXPECT_TRUE(
        AllClose(cross_entropy(logits, t, eps, Reduction::None), from_vector(ref, {128}).to(DType::F32), 1e-5, 1e-5));
    EXPECT_NEAR(cross_entropy(logits, t, eps).item(), mean_ref, 1e-5);
  }
  // Gradient: (softmax - (1 - eps) onehot - eps / C) / N.
  Tensor x = leaf(logits.clone());
  cross_entropy(x, t, 0.1).backward();
  auto p = softmax(logits, 1).to_vector<float>();
  auto tv = t.to_vector<int64_t>();
  std::vector<float> want(p.size());
  for (int64_t i = 0; i < 128; ++i)
    for (int64_t c = 0; c < 10; ++c) want[i * 10 + c] = (p[i * 10 + c] - 0.01f - (c == tv[i] ? 0.9f : 0.0f)) / 128;
  EXPECT_TRUE(AllClose(x.grad(), from_vector(want, {128, 10}), 1e-4, 1e-7));
}

TEST(Loss, CrossEntropyIsStableForHugeLogits) {
  Tensor logits = tensor({1000, 0, -1000, 500}, {2, 2});
  Tensor l = cross_entropy(logits, targets({1, 0}), 0.0, Reduction::None);
  EXPECT_TRUE(AllClose(l, tensor({1000, 1500}, {2}), 1e-6, 1e-6));
  EXPECT_TRUE(AllClose(cross_entropy(logits, targets({0, 1}), 0.0, Reduction::None), zeros({2}), 0, 1e-6));
}

TEST(Loss, UnbatchedInput) {
  Tensor logits = tensor({1, 2, 3}, {3}, DType::F64);
  Tensor t = from_vector<int64_t>({2}, {});
  const double nll = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3;
  EXPECT_NEAR(cross_entropy(logits, t).item(), nll, 1e-14);
  EXPECT_EQ(cross_entropy(logits, t, 0.0, Reduction::None).shape(), Shape{});
  EXPECT_NEAR(nll_loss(log_softmax(logits, 0), t).item(), nll, 1e-14);
}

TEST(Loss, NllLossValues) {
  Tensor lp = tensor({-0.5, -1.0, -2.0, -0.1, -3.0, -4.0}, {2, 3}, DType::F64);
  Tensor t = targets({1, 0});
  EXPECT_DOUBLE_EQ(nll_loss(lp, t).item(), 0.55);
  EXPECT_DOUBLE_EQ(nll_loss(lp, t, Reduction::Sum).item(), 1.1);
  EXPECT_EQ(nll_loss(lp, t, Reduction::None).to_vector<double>(), (std::vector<double>{1.0, 0.1}));
  // nll(log_softmax) is cross_entropy.
  Tensor x = randn64({4, 5}, 9);
  Tensor tt = targets({4, 0, 2, 2});
  EXPECT_NEAR(nll_loss(log_softmax(x, 1), tt).item(), cross_entropy(x, tt).item(), 1e-14);
}

TEST(Loss, MseLossValues) {
  Tensor a = tensor({1, 2, 3}, {3}, DType::F64), b = tensor({1, 0, 0}, {3}, DType::F64);
  EXPECT_DOUBLE_EQ(mse_loss(a, b).item(), 13.0 / 3.0);
  EXPECT_DOUBLE_EQ(mse_loss(a, b, Reduction::Sum).item(), 13.0);
  EXPECT_EQ(mse_loss(a, b, Reduction::None).to_vector<double>(), (std::vector<double>{0, 4, 9}));
}

TEST(Loss, Gradchecks) {
  Tensor x = leaf(randn64({4, 5}, 1));
  Tensor t = targets({1, 4, 0, 1});
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None})
    for (double eps : {0.0, 0.25}) {
      expect_gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, eps, r); }, {x});
      expect_gradcheck([&](const std::vector<Tensor>& in) { return nll_loss(log_softmax(in[0], 1), t, r); }, {x});
    }
  expect_gradcheck([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t, Reduction::None); }, {x});
  // Non-contiguous logits.
  Tensor xt = leaf(randn64({5, 4}, 2));
  expect_gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0].t(), t, 0.1); }, {xt});
  Tensor a = leaf(randn64({3, 4}, 3)), b = leaf(randn64({3, 4}, 4));
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None})
    expect_gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], r); }, {a, b});
  Tensor fixed = randn64({3, 4}, 5);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); }, {a, fixed});
}

TEST(Loss, Errors) {
  Tensor logits = zeros({4, 3});
  expect_error([&] { cross_entropy(logits, targets({0, 1, 3, 2})); }, {"cross_entropy", "target value 3", "[0, 3)"});
  expect_error([&] { cross_entropy(logits, targets({0, -1, 1, 2})); }, {"target value -1", "[0, 3)"});
  expect_error([&] { cross_entropy(logits, targets({0, 1, 2, 0, 1})); }, {"cross_entropy", "[4, 3]", "[5]"});
  expect_error([&] { cross_entropy(logits, zeros({4})); }, {"cross_entropy", "i64", "f32"});
  expect_error([&] { cross_entropy(zeros({4, 3, 2}), targets({0, 1, 2, 0})); }, {"[N, C]", "[4, 3, 2]"});
  expect_error([&] { cross_entropy(logits, targets({0, 1, 2, 0}), 1.5); }, {"label_smoothing", "1.5"});
  expect_error([&] { nll_loss(logits, targets({0, 1, 7, 0})); }, {"nll_loss", "target value 7", "[0, 3)"});
  expect_error([&] { mse_loss(zeros({4}), zeros({4, 1})); }, {"mse_loss", "[4]", "[4, 1]"});
  expect_error([&] { mse_loss(zeros({4}), zeros({4}, DType::F64)); }, {"mse_loss", "f32", "f64"});
}
