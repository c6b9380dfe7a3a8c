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

// Distinct values (spaced 0.37 apart, shuffled) so max/min have no ties and no kinks under eps.
Tensor distinct64(const Shape& s, uint64_t seed) {
  Generator g(seed);
  Tensor p = randperm(numel_of(s), &g).to(DType::F64);
  auto v = p.to_vector<double>();
  for (double& x : v) x = x * 0.37 - 2.0;
  return from_vector(v, s);
}

using qslim::testing::expect_error;

// Naive reference: sum of x [A, B, C] over the dims flagged in r, keepdim shape.
std::vector<double> naive_sum3(const Tensor& x, bool r0, bool r1, bool r2) {
  auto v = x.to_vector<double>();
  int64_t A = x.size(0), B = x.size(1), C = x.size(2);
  int64_t oa = r0 ? 1 : A, ob = r1 ? 1 : B, oc = r2 ? 1 : C;
  std::vector<double> out(oa * ob * oc, 0.0);
  for (int64_t a = 0; a < A; ++a)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        out[((r0 ? 0 : a) * ob + (r1 ? 0 : b)) * oc + (r2 ? 0 : c)] += v[(a * B + b) * C + c];
  return out;
}

}  // namespace

TEST(Reduce, SumMatchesNaiveReference) {
  Tensor x = randn64({3, 4, 5}, 1);
  for (int mask = 1; mask < 8; ++mask) {
    bool r0 = mask & 1, r1 = mask & 2, r2 = mask & 4;
    std::vector<int64_t> dims;
    if (r0) dims.push_back(0);
    if (r1) dims.push_back(-2);
    if (r2) dims.push_back(2);
    Tensor s = sum(x, dims, true);
    Shape want{r0 ? 1 : 3, r1 ? 1 : 4, r2 ? 1 : 5};
    EXPECT_EQ(s.shape(), want);
    EXPECT_TRUE(AllClose(s, from_vector(naive_sum3(x, r0, r1, r2), want), 1e-12, 1e-12));
    Shape squeezed;
    for (int i = 0; i < 3; ++i)
      if (want[i] != 1 || !(mask & (1 << i))) squeezed.push_back(want[i]);
    EXPECT_EQ(sum(x, dims, false).shape(), squeezed);
  }
  Tensor a = arange(0, 24, 1, DType::F32).reshape({2, 3, 4});
  EXPECT_EQ(sum(a).shape(), Shape{});
  EXPECT_DOUBLE_EQ(sum(a).item(), 276.0);
  EXPECT_EQ(sum(a, {1}).to_vector<float>(), (std::vector<float>{12, 15, 18, 21, 48, 51, 54, 57}));
  // A long f32 sum (chunked, parallel path) keeps f64-like precision: values 1 + k * 2^-20 are exact.
  std::vector<float> lv(300001);
  double lref = 0;
  for (size_t k = 0; k < lv.size(); ++k) {
    lv[k] = 1.0f + static_cast<float>(k % 1000) * 0x1p-20f;
    lref += lv[k];
  }
  EXPECT_NEAR(sum(from_vector(lv, {300001})).item(), lref, lref * 1e-7);
  // Integer sums widen to i64.
  Tensor mask = ones({300}, DType::U8);
  EXPECT_EQ(sum(mask).dtype(), DType::I64);
  EXPECT_EQ(sum(mask).item(), 300.0);
  EXPECT_EQ(sum(from_vector<int32_t>({2000000000, 2000000000}, {2})).item(), 4e9);
  // Non-contiguous input.
  EXPECT_EQ(sum(a.transpose(0, 2), {2}).to_vector<float>(),
            (std::vector<float>{12, 20, 28, 14, 22, 30, 16, 24, 32, 18, 26, 34}));
}

TEST(Reduce, MeanAndVarValues) {
  Tensor x = tensor({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64);
  EXPECT_DOUBLE_EQ(mean(x).item(), 3.5);
  EXPECT_EQ(mean(x, {1}).to_vector<double>(), (std::vector<double>{2.0, 5.0}));
  EXPECT_EQ(mean(x, {0}, true).shape(), (Shape{1, 3}));
  EXPECT_EQ(mean(x, {0}, true).to_vector<double>(), (std::vector<double>{2.5, 3.5, 4.5}));
  // Rows [1,2,3] and [4,5,6]: squared deviations 1+0+1 = 2, so unbiased 2/2 = 1, biased 2/3.
  EXPECT_EQ(var(x, {1}).to_vector<double>(), (std::vector<double>{1.0, 1.0}));
  auto vb = var(x, {1}, false).to_vector<double>();
  EXPECT_NEAR(vb[0], 2.0 / 3.0, 1e-15);
  // Columns (1,4): deviations 1.5^2 * 2 = 4.5 -> 4.5 unbiased.
  EXPECT_EQ(var(x, {0}, true, true).to_vector<double>(), (std::vector<double>{4.5, 4.5, 4.5}));
  EXPECT_EQ(var(x, {0}, true, true).shape(), (Shape{1, 3}));
  // All six: mean 3.5, sum of squares 17.5, unbiased 3.5.
  EXPECT_DOUBLE_EQ(var(x).item(), 3.5);
  // A single sample has no unbiased variance: NaN, as in PyTorch.
  EXPECT_TRUE(std::isnan(var(tensor({2.0}, {1})).item()));
  EXPECT_DOUBLE_EQ(var(tensor({2.0}, {1}), {}, false).item(), 0.0);
  // Large offset: the two-pass formula keeps precision.
  Tensor big = tensor({1e8 + 1, 1e8 + 2, 1e8 + 3}, {3}, DType::F64);
  EXPECT_DOUBLE_EQ(var(big).item(), 1.0);
}

TEST(Reduce, DimErrors) {
  Tensor x = zeros({2, 3});
  expect_error([&] { sum(x, {1, -1}); }, {"sum", "dim -1", "more than once"});
  expect_error([&] { mean(x, {2}); }, {"mean", "dim 2", "rank 2"});
  expect_error([&] { mean(zeros({2}, DType::I64)); }, {"mean", "i64"});
  expect_error([&] { var(x, {5}); }, {"var", "dim 5"});
}

TEST(Reduce, MaxMinOverDim) {
  // [[3, 7, 7], [9, 1, 1]]: ties go to the first index.
  Tensor x = tensor({3, 7, 7, 9, 1, 1}, {2, 3});
  auto [mv, mi] = max(x, 1);
  EXPECT_EQ(mv.to_vector<float>(), (std::vector<float>{7, 9}));
  EXPECT_EQ(mi.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(mi.dtype(), DType::I64);
  auto [nv, ni] = min(x, -1, true);
  EXPECT_EQ(nv.shape(), (Shape{2, 1}));
  EXPECT_EQ(nv.to_vector<float>(), (std::vector<float>{3, 1}));
  EXPECT_EQ(ni.to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  auto [cv, ci] = max(x, 0);
  EXPECT_EQ(cv.to_vector<float>(), (std::vector<float>{9, 7, 7}));
  EXPECT_EQ(ci.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(x, 0, true).shape(), (Shape{1, 3}));
  EXPECT_DOUBLE_EQ(max(x).item(), 9.0);
  EXPECT_DOUBLE_EQ(min(x).item(), 1.0);
  EXPECT_EQ(max(x).shape(), Shape{});
  // Integers and NaN (NaN is the extreme, as in PyTorch).
  EXPECT_EQ(max(from_vector<int64_t>({4, -2, 8}, {3}), 0).second.item(), 2.0);
  Tensor withnan = tensor({1, NAN, 5}, {3});
  EXPECT_TRUE(std::isnan(max(withnan, 0).first.item()));
  EXPECT_EQ(max(withnan, 0).second.item(), 1.0);
  EXPECT_TRUE(std::isnan(min(withnan).item()));
  expect_error([&] { max(zeros({2, 0}), 1); }, {"max", "size 0", "[2, 0]"});
  expect_error([&] { min(zeros({0})); }, {"min", "empty", "[0]"});
}

TEST(Reduce, MaxMinMatchNaiveOnInnerLayout) {
  Tensor x = randn64({3, 17, 6}, 7);
  auto v = x.to_vector<double>();
  auto [mv, mi] = max(x, 1);
  auto [nv, ni] = min(x, 1);
  auto gv = mv.to_vector<double>(), lv = nv.to_vector<double>();
  auto gi = mi.to_vector<int64_t>(), li = ni.to_vector<int64_t>();
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < 6; ++c) {
      int64_t bi = 0, si = 0;
      for (int b = 1; b < 17; ++b) {
        if (v[(a * 17 + b) * 6 + c] > v[(a * 17 + bi) * 6 + c]) bi = b;
        if (v[(a * 17 + b) * 6 + c] < v[(a * 17 + si) * 6 + c]) si = b;
      }
      EXPECT_EQ(gi[a * 6 + c], bi);
      EXPECT_EQ(li[a * 6 + c], si);
      EXPECT_EQ(gv[a * 6 + c], v[(a * 17 + bi) * 6 + c]);
      EXPECT_EQ(lv[a * 6 + c], v[(a * 17 + si) * 6 + c]);
    }
}

TEST(Reduce, SoftmaxHandValues) {
  // exp(x) = [1, 2, 3] / 6.
  Tensor x = tensor({0, std::log(2.0), std::log(3.0)}, {1, 3}, DType::F64);
  EXPECT_TRUE(AllClose(softmax(x, 1), tensor({1.0 / 6, 2.0 / 6, 3.0 / 6}, {1, 3}, DType::F64), 1e-14, 1e-15));
  EXPECT_TRUE(AllClose(log_softmax(x, -1),
                       tensor({std::log(1.0 / 6), std::log(2.0 / 6), std::log(3.0 / 6)}, {1, 3}, DType::F64), 1e-14,
                       1e-14));
  // Stable for huge logits (a naive exp overflows f32).
  const double z = 2 + std::exp(-1.0);
  Tensor big = tensor({100, 100, 99}, {3});
  EXPECT_TRUE(AllClose(softmax(big, 0), tensor({1 / z, 1 / z, std::exp(-1.0) / z}, {3}), 1e-6, 1e-7));
  EXPECT_TRUE(AllClose(log_softmax(big, 0), tensor({-std::log(z), -std::log(z), -1 - std::log(z)}, {3}), 1e-6, 1e-6));
  EXPECT_THROW(softmax(zeros({2}, DType::I64), 0), Error);
  EXPECT_THROW(softmax(zeros({2, 3}), 2), Error);
}

TEST(Reduce, SoftmaxMatchesNaiveOverEveryDim) {
  Tensor x = randn64({4, 300, 5}, 3);  // inner 5 and 1500 cover both kernel layouts and column tiles
  auto v = x.to_vector<double>();
  const Shape s = x.shape();
  for (int64_t dim = 0; dim < 3; ++dim) {
    std::vector<double> ref(v.size()), lref(v.size());
    int64_t outer = 1, inner = 1, n = s[dim];
    for (int64_t i = 0; i < dim; ++i) outer *= s[i];
    for (int64_t i = dim + 1; i < 3; ++i) inner *= s[i];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        double z = 0;
        for (int64_t k = 0; k < n; ++k) z += std::exp(v[(o * n + k) * inner + i]);
        for (int64_t k = 0; k < n; ++k) {
          int64_t j = (o * n + k) * inner + i;
          ref[j] = std::exp(v[j]) / z;
          lref[j] = v[j] - std::log(z);
        }
      }
    EXPECT_TRUE(AllClose(softmax(x, dim), from_vector(ref, s), 1e-12, 1e-14)) << "dim " << dim;
    EXPECT_TRUE(AllClose(log_softmax(x, dim), from_vector(lref, s), 1e-12, 1e-12)) << "dim " << dim;
    Tensor xf = x.to(DType::F32);
    EXPECT_TRUE(AllClose(softmax(xf, dim), from_vector(ref, s).to(DType::F32), 1e-5, 1e-7)) << "dim " << dim;
  }
}

TEST(Reduce, GradcheckSumMeanVar) {
  Tensor x = leaf(randn64({2, 3, 4}, 11));
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {1}, true); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0], {-1}); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return var(in[0]); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return var(in[0], {1}, true, true); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return var(in[0], {0, 2}, false); }, {x});
  // Through a non-contiguous view.
  expect_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0].transpose(0, 2), {1}); }, {x});
  // Many elements: exercises the long-run SIMD path and the strided (inner > 1) path.
  Tensor big = leaf(randn64({3, 70, 40}, 12));
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {1}); }, {big});
  Tensor s = leaf(scalar_tensor(1.5, DType::F64));
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {s});
}

TEST(Reduce, GradcheckMaxMin) {
  Tensor x = leaf(distinct64({3, 4, 5}, 5));
  expect_gradcheck([](const std::vector<Tensor>& in) { return max(in[0], 1).first; }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return max(in[0], -1, true).first; }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return min(in[0], 0).first; }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return max(in[0]); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return min(in[0]); }, {x});
}

TEST(Reduce, MaxGradientGoesToFirstIndexOrIsSharedForFullReduction) {
  Tensor x = leaf(tensor({1, 3, 3, 2}, {4}, DType::F64));
  max(x, 0).first.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
  x.set_grad(Tensor());
  max(x).backward();  // PyTorch's full max splits the gradient between ties
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 0.5, 0}));
}

TEST(Reduce, GradcheckSoftmax) {
  Tensor x = leaf(randn64({3, 5}, 21));
  expect_gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0], 0); }, {x});
  Tensor y = leaf(randn64({2, 3, 4}, 22));
  expect_gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {y});
  expect_gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0], 1); }, {y});
  expect_gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0].transpose(1, 2), 2); }, {y});
}

TEST(Reduce, SavedOutputModifiedInPlaceIsReported) {
  Tensor x = leaf(randn64({2, 3}, 4));
  Tensor y = softmax(x, 1);
  y.fill_(0);
  EXPECT_THROW(sum(y).backward(), Error);
}
