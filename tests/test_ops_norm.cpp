#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/kernels.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

// Naive batch norm over [N, C, S] in double: returns y and fills the biased batch mean/var.
std::vector<double> ref_bn(const std::vector<double>& x, int64_t N, int64_t C, int64_t S, const std::vector<double>& w,
                           const std::vector<double>& b, double eps, std::vector<double>& mean,
                           std::vector<double>& var) {
  mean.assign(C, 0.0);
  var.assign(C, 0.0);
  const double M = static_cast<double>(N * S);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) mean[c] += x[(n * C + c) * S + s] / M;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        double d = x[(n * C + c) * S + s] - mean[c];
        var[c] += d * d / M;
      }
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        int64_t i = (n * C + c) * S + s;
        y[i] = (x[i] - mean[c]) / std::sqrt(var[c] + eps) * w[c] + b[c];
      }
  return y;
}

// Naive training-mode input gradient: dx = w/sqrt(var+eps) * (g - mean(g) - xhat * mean(g * xhat)).
std::vector<double> ref_bn_dx(const std::vector<double>& x, const std::vector<double>& g, int64_t N, int64_t C,
                              int64_t S, const std::vector<double>& w, double eps) {
  std::vector<double> mean, var, ones(C, 1.0), zeros(C, 0.0);
  std::vector<double> xhat = ref_bn(x, N, C, S, ones, zeros, eps, mean, var);
  std::vector<double> mg(C, 0.0), mgx(C, 0.0), dx(x.size());
  const double M = static_cast<double>(N * S);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        int64_t i = (n * C + c) * S + s;
        mg[c] += g[i] / M;
        mgx[c] += g[i] * xhat[i] / M;
      }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        int64_t i = (n * C + c) * S + s;
        dx[i] = w[c] / std::sqrt(var[c] + eps) * (g[i] - mg[c] - xhat[i] * mgx[c]);
      }
  return dx;
}

}  // namespace

TEST(BatchNorm, HandComputedTwoValues) {
  Tensor x = tensor({1, 3}, {2, 1});
  Tensor rm = zeros({1}), rv = ones({1});
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  const double s = 1.0 / std::sqrt(1.0 + 1e-5);  // batch mean 2, biased variance 1
  EXPECT_NEAR(y.to_vector<double>()[0], -s, 1e-6);
  EXPECT_NEAR(y.to_vector<double>()[1], s, 1e-6);
  // running_mean = 0.9 * 0 + 0.1 * 2; running_var uses the unbiased variance 2: 0.9 * 1 + 0.1 * 2.
  EXPECT_NEAR(rm.item(), 0.2, 1e-7);
  EXPECT_NEAR(rv.item(), 1.1, 1e-6);
}

TEST(BatchNorm, TrainingMatchesReferenceAndUpdatesRunningStats) {
  const int64_t N = 3, C = 4, H = 2, W = 3, S = H * W;
  Generator gen(7);
  Tensor x = randn({N, C, H, W}, DType::F32, &gen) * 2.0 + 0.5;
  Tensor w = uniform({C}, 0.5, 1.5, DType::F32, &gen), b = randn({C}, DType::F32, &gen);
  Tensor rm = randn({C}, DType::F32, &gen), rv = uniform({C}, 0.5, 2.0, DType::F32, &gen);
  auto rm0 = rm.to_vector<double>(), rv0 = rv.to_vector<double>();
  Tensor y = batch_norm(x, rm, rv, w, b, true, 0.2, 1e-3);
  std::vector<double> mean, var;
  auto want = ref_bn(x.to_vector<double>(), N, C, S, w.to_vector<double>(), b.to_vector<double>(), 1e-3, mean, var);
  EXPECT_TRUE(AllClose(y, from_vector<double>(want, {N, C, H, W}), 1e-5, 1e-5));
  const double M = N * S;
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_NEAR(rm.to_vector<double>()[c], 0.8 * rm0[c] + 0.2 * mean[c], 1e-5);
    EXPECT_NEAR(rv.to_vector<double>()[c], 0.8 * rv0[c] + 0.2 * var[c] * M / (M - 1), 1e-5);
  }
}

TEST(BatchNorm, TwoDimensionalInput) {
  const int64_t N = 5, C = 3;
  Generator gen(3);
  Tensor x = randn({N, C}, DType::F64, &gen);
  Tensor w = randn({C}, DType::F64, &gen), b = randn({C}, DType::F64, &gen);
  Tensor y = batch_norm(x, Tensor(), Tensor(), w, b, true);
  std::vector<double> mean, var;
  auto want = ref_bn(x.to_vector<double>(), N, C, 1, w.to_vector<double>(), b.to_vector<double>(), 1e-5, mean, var);
  EXPECT_TRUE(AllClose(y, from_vector<double>(want, {N, C}), 1e-12, 1e-12));
}

TEST(BatchNorm, LargeMeanSmallSpreadStaysAccurate) {
  Generator gen(5);
  const int64_t N = 16, C = 2, S = 9;
  Tensor x = randn({N, C, 3, 3}, DType::F64, &gen) * 1e-3 + 1e6;
  Tensor rm = zeros({C}, DType::F64), rv = zeros({C}, DType::F64);
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 1.0);
  std::vector<double> mean, var;
  auto want = ref_bn(x.to_vector<double>(), N, C, S, {1, 1}, {0, 0}, 1e-5, mean, var);
  EXPECT_TRUE(AllClose(y, from_vector<double>(want, {N, C, 3, 3}), 1e-6, 1e-6));
  const double M = N * S;
  for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(rv.to_vector<double>()[c], var[c] * M / (M - 1), 1e-9 * var[c]);
}

TEST(BatchNorm, NonContiguousInput) {
  Generator gen(4);
  Tensor base = randn({3, 2, 4, 5}, DType::F64, &gen);
  Tensor x = base.transpose(2, 3);  // [3, 2, 5, 4], not contiguous
  Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
  Tensor y2 = batch_norm(x.contiguous(), Tensor(), Tensor(), Tensor(), Tensor(), true);
  EXPECT_TRUE(AllClose(y, y2, 1e-12, 1e-12));
}

TEST(BatchNorm, EvalUsesRunningStatsWithoutUpdating) {
  Tensor x = tensor({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  Tensor rm = tensor({1, -1}, {2}), rv = tensor({4, 0.25}, {2});
  Tensor w = tensor({2, 3}, {2}), b = tensor({0.5, -0.5}, {2});
  Tensor y = batch_norm(x, rm, rv, w, b, false, 0.1, 0.0 + 1e-12);
  // channel 0: (x - 1) / 2 * 2 + 0.5; channel 1: (x + 1) / 0.5 * 3 - 0.5
  std::vector<double> want = {0 + 0.5, 1 + 0.5, 6 * 4 - 0.5, 6 * 5 - 0.5, 4 + 0.5, 5 + 0.5, 6 * 8 - 0.5, 6 * 9 - 0.5};
  EXPECT_TRUE(AllClose(y, from_vector<double>(want, {2, 2, 2}).to(DType::F32), 1e-5, 1e-5));
  EXPECT_EQ(rm.to_vector<float>(), (std::vector<float>{1, -1}));
  EXPECT_EQ(rv.to_vector<float>(), (std::vector<float>{4, 0.25}));
}

TEST(BatchNorm, GradcheckTraining4D) {
  Generator gen(11);
  Tensor x = randn({3, 2, 2, 3}, DType::F64, &gen).set_requires_grad();
  Tensor w = uniform({2}, 0.5, 1.5, DType::F64, &gen).set_requires_grad();
  Tensor b = randn({2}, DType::F64, &gen).set_requires_grad();
  Tensor rm = zeros({2}, DType::F64), rv = ones({2}, DType::F64);
  auto r = gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm.clone(), rv.clone(), in[1], in[2], true, 0.1, 1e-5);
      },
      {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(BatchNorm, GradcheckTraining2DAndNoAffine) {
  Generator gen(12);
  Tensor x = randn({4, 3}, DType::F64, &gen).set_requires_grad();
  Tensor w = uniform({3}, 0.5, 1.5, DType::F64, &gen).set_requires_grad();
  Tensor b = randn({3}, DType::F64, &gen).set_requires_grad();
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
                     {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
  Tensor x3 = randn({2, 3, 4}, DType::F64, &gen).set_requires_grad();
  auto r2 = gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                      {x3});
  EXPECT_TRUE(r2.ok) << r2.message;
}

TEST(BatchNorm, GradcheckParametersOnly) {
  Generator gen(14);
  Tensor x = randn({3, 2, 2, 2}, DType::F64, &gen);  // input does not require grad
  Tensor w = uniform({2}, 0.5, 1.5, DType::F64, &gen).set_requires_grad();
  Tensor b = randn({2}, DType::F64, &gen).set_requires_grad();
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
                     {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(BatchNorm, GradcheckEval) {
  Generator gen(13);
  Tensor x = randn({2, 3, 2, 2}, DType::F64, &gen).set_requires_grad();
  Tensor w = randn({3}, DType::F64, &gen).set_requires_grad();
  Tensor b = randn({3}, DType::F64, &gen).set_requires_grad();
  Tensor rm = randn({3}, DType::F64, &gen), rv = uniform({3}, 0.5, 2.0, DType::F64, &gen);
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); },
                     {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(BatchNorm, LargeParallelMatchesReference) {
  const int64_t N = 8, C = 64, H = 16, W = 16, S = H * W;  // enough work for the channel loop to go parallel
  Generator gen(21);
  Tensor x = (randn({N, C, H, W}, DType::F32, &gen) * 3.0 + 1.0).set_requires_grad();
  Tensor w = uniform({C}, 0.5, 1.5, DType::F32, &gen).set_requires_grad();
  Tensor b = randn({C}, DType::F32, &gen).set_requires_grad();
  Tensor y = batch_norm(x, Tensor(), Tensor(), w, b, true);
  std::vector<double> mean, var;
  auto xv = x.to_vector<double>();
  auto wv = w.to_vector<double>();
  auto want = ref_bn(xv, N, C, S, wv, b.to_vector<double>(), 1e-5, mean, var);
  EXPECT_TRUE(AllClose(y, from_vector<double>(want, {N, C, H, W}), 1e-4, 1e-4));
  Tensor g = randn({N, C, H, W}, DType::F32, &gen);
  y.backward(g);
  auto want_dx = ref_bn_dx(xv, g.to_vector<double>(), N, C, S, wv, 1e-5);
  EXPECT_TRUE(AllClose(x.grad(), from_vector<double>(want_dx, {N, C, H, W}), 1e-3, 1e-4));
  // dbias = sum of g per channel.
  auto gv = g.to_vector<double>();
  std::vector<double> db(C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) db[c] += gv[(n * C + c) * S + s];
  EXPECT_TRUE(AllClose(b.grad(), from_vector<double>(db, {C}), 1e-4, 1e-3));
}

TEST(BatchNorm, Errors) {
  try {
    batch_norm(ones({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than 1 value per channel"), std::string::npos) << e.what();
  }
  try {
    batch_norm(ones({2, 3, 4}), zeros({4}), ones({4}), Tensor(), Tensor(), true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 channels"), std::string::npos) << e.what();
  }
  EXPECT_THROW(batch_norm(ones({3}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(batch_norm(ones({2, 3}, DType::F64), Tensor(), Tensor(), ones({3}), Tensor(), true), Error);
}

// ---- dropout ----

TEST(Dropout, IdentityWhenEvalOrZero) {
  Tensor x = randn({4, 5});
  EXPECT_TRUE(dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).is_same(x));
  EXPECT_THROW(dropout(x, 1.5, true), Error);
  EXPECT_THROW(dropout(x, -0.1, true), Error);
  EXPECT_EQ(kernels::sum_all(kernels::mul(dropout(x, 1.0, true), dropout(x, 1.0, true))), 0.0);
}

TEST(Dropout, MaskStatisticsAndScale) {
  Generator gen(5);
  Tensor x = uniform({100001}, 1.0, 2.0, DType::F32, &gen);
  Generator mgen(9);
  Tensor y = dropout(x, 0.3, true, &mgen);
  auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
  int64_t zeros_count = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0.0f) {
      ++zeros_count;
    } else {
      ASSERT_FLOAT_EQ(yv[i], xv[i] / 0.7f) << "element " << i;
    }
  }
  EXPECT_NEAR(static_cast<double>(zeros_count) / xv.size(), 0.3, 0.01);
}

TEST(Dropout, SeededMasksAreReproducible) {
  Tensor x = ones({1000});
  Generator g1(42), g2(42), g3(43);
  auto a = dropout(x, 0.5, true, &g1).to_vector<float>();
  auto b = dropout(x, 0.5, true, &g2).to_vector<float>();
  auto c = dropout(x, 0.5, true, &g3).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  manual_seed(77);
  auto d = dropout(x, 0.5, true).to_vector<float>();
  manual_seed(77);
  auto e = dropout(x, 0.5, true).to_vector<float>();
  EXPECT_EQ(d, e);
}

TEST(Dropout, GradcheckWithFixedMask) {
  Generator gen(1);
  Tensor x = randn({3, 7}, DType::F64, &gen).set_requires_grad();
  auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator mask_gen(2024);
        return dropout(in[0], 0.4, true, &mask_gen);
      },
      {x});
  EXPECT_TRUE(r.ok) << r.message;
  // The gradient is the mask itself: zero exactly where the output is zero.
  x.set_grad(Tensor());
  Generator mask_gen(2024);
  Tensor y = dropout(x, 0.4, true, &mask_gen);
  y.backward(ones_like(y));
  auto yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i], yv[i] == 0.0 ? 0.0 : 1.0 / 0.6);
}

// ---- embedding ----

TEST(Embedding, LooksUpRows) {
  Tensor w = arange(0, 12, 1, DType::F32).reshape({4, 3});
  Tensor idx = from_vector<int64_t>({3, 0, 2, 2}, {2, 2});
  Tensor y = embedding(w, idx);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{9, 10, 11, 0, 1, 2, 6, 7, 8, 6, 7, 8}));
}

TEST(Embedding, GradAccumulatesRepeatsAndSkipsPadding) {
  Tensor w = randn({5, 2}).set_requires_grad();
  Tensor idx = from_vector<int64_t>({1, 3, 1, 0, 3, 1}, {6});
  Tensor y = embedding(w, idx, /*padding_idx=*/3);
  y.backward(ones_like(y));
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{1, 1, 3, 3, 0, 0, 0, 0, 0, 0}));
}

TEST(Embedding, Gradcheck) {
  Generator gen(8);
  Tensor w = randn({4, 3}, DType::F64, &gen).set_requires_grad();
  Tensor idx = from_vector<int64_t>({0, 2, 2, 3, 1, 0}, {2, 3});
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {w});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Embedding, OutOfRangeIndexNamed) {
  Tensor w = zeros({4, 3});
  try {
    embedding(w, from_vector<int64_t>({0, 7}, {2}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(embedding(w, from_vector<int64_t>({-1}, {1})), Error);
  EXPECT_THROW(embedding(w, tensor({1}, {1})), Error);  // f32 indices
  EXPECT_THROW(embedding(w, from_vector<int64_t>({0}, {1}), 4), Error);
}
