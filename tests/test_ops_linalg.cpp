// matmul and linear: forward against naive loops written here, gradients by finite differences
// in f64, broadcasting, 1-D operands, transposed (non-contiguous) operands and errors.
#include <gtest/gtest.h>

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

Tensor rnd(const Shape& s, uint64_t seed, DType dt = DType::F64) {
  Generator g(seed);
  return randn(s, dt, &g);
}

// Naive batched matmul of a [..., M, K] and b [..., K, N] (both at least 2-D) with broadcasting.
Tensor ref_matmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ab, bb, "ref");
  Tensor ae = a.expand([&] { Shape s = batch; s.push_back(m); s.push_back(k); return s; }()).contiguous();
  Tensor be = b.expand([&] { Shape s = batch; s.push_back(k); s.push_back(n); return s; }()).contiguous();
  std::vector<double> av = ae.to_vector<double>(), bv = be.to_vector<double>(), out;
  const int64_t count = numel_of(batch);
  for (int64_t t = 0; t < count; ++t)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += av[(t * m + i) * k + p] * bv[(t * k + p) * n + j];
        out.push_back(s);
      }
  Shape os = batch;
  os.push_back(m);
  os.push_back(n);
  return from_vector(out, os);
}

struct MatmulCase {
  std::string name;
  Shape a, b;
};

std::vector<MatmulCase> nd_cases() {
  return {
      {"2d", {3, 4}, {4, 5}},
      {"2d_row_vector_like", {1, 4}, {4, 1}},
      {"batched", {2, 3, 4}, {2, 4, 5}},
      {"broadcast_a_batch", {1, 3, 4}, {3, 4, 2}},
      {"broadcast_both", {2, 1, 3, 4}, {3, 4, 5}},
      {"batched_times_matrix", {2, 3, 4}, {4, 5}},
      {"matrix_times_batched", {3, 4}, {2, 4, 5}},
      {"batch_of_one_rhs", {2, 2, 3, 4}, {1, 4, 2}},
  };
}

}  // namespace

TEST(Matmul, ForwardMatchesNaive) {
  for (const MatmulCase& c : nd_cases()) {
    Tensor a = rnd(c.a, 1), b = rnd(c.b, 2);
    EXPECT_TRUE(AllClose(matmul(a, b), ref_matmul(a, b), 1e-12, 1e-12)) << c.name;
    EXPECT_TRUE(AllClose(matmul(a.to(DType::F32), b.to(DType::F32)).to(DType::F64), ref_matmul(a, b), 1e-5, 1e-5))
        << c.name;
  }
}

TEST(Matmul, Gradcheck) {
  for (const MatmulCase& c : nd_cases()) {
    Tensor a = rnd(c.a, 3).set_requires_grad(), b = rnd(c.b, 4).set_requires_grad();
    auto f = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    GradcheckResult r = gradcheck(f, {a, b});
    EXPECT_TRUE(r.ok) << c.name << ": " << r.message;
  }
}

TEST(Matmul, OneDimensionalOperands) {
  Tensor v = rnd({4}, 5), w = rnd({4}, 6), m = rnd({4, 3}, 7), mt = rnd({3, 4}, 8), bt = rnd({2, 4, 3}, 9);
  // vector . vector -> scalar
  Tensor d = matmul(v, w);
  EXPECT_EQ(d.shape(), Shape{});
  EXPECT_NEAR(d.item(), ref_matmul(v.reshape({1, 4}), w.reshape({4, 1})).item(), 1e-12);
  // vector x matrix, matrix x vector, vector x batch, batch x vector
  EXPECT_TRUE(AllClose(matmul(v, m), ref_matmul(v.reshape({1, 4}), m).reshape({3}), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(matmul(mt, v), ref_matmul(mt, v.reshape({4, 1})).reshape({3}), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(matmul(v, bt), ref_matmul(v.reshape({1, 4}), bt).reshape({2, 3}), 1e-12, 1e-12));
  Tensor bm = rnd({2, 3, 4}, 10);
  EXPECT_TRUE(AllClose(matmul(bm, v), ref_matmul(bm, v.reshape({4, 1})).reshape({2, 3}), 1e-12, 1e-12));

  const std::vector<std::pair<Shape, Shape>> shapes = {{{4}, {4}}, {{4}, {4, 3}}, {{3, 4}, {4}}, {{4}, {2, 4, 3}},
                                                       {{2, 3, 4}, {4}}};
  for (auto& [sa, sb] : shapes) {
    Tensor a = rnd(sa, 11).set_requires_grad(), b = rnd(sb, 12).set_requires_grad();
    auto f = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    GradcheckResult r = gradcheck(f, {a, b});
    EXPECT_TRUE(r.ok) << shape_str(sa) << " x " << shape_str(sb) << ": " << r.message;
  }
}

TEST(Matmul, TransposedOperandsWithoutCopies) {
  Tensor a = rnd({5, 3}, 13), b = rnd({4, 5}, 14);
  // a.t() [3, 5] and b.t() [5, 4] are column-major views.
  EXPECT_TRUE(AllClose(matmul(a.t(), b.t()), ref_matmul(a.t().contiguous(), b.t().contiguous()), 1e-12, 1e-12));
  Tensor ab = rnd({2, 4, 3}, 15);
  EXPECT_TRUE(AllClose(matmul(ab.transpose(1, 2), rnd({4, 2}, 16)),
                       ref_matmul(ab.transpose(1, 2).contiguous(), rnd({4, 2}, 16)), 1e-12, 1e-12));
  // A strided slice that is neither row- nor column-major is copied.
  Tensor big = rnd({6, 8}, 17);
  Tensor sl = big.slice(1, 0, 8, 2);  // [6, 4], column stride 2
  EXPECT_TRUE(AllClose(matmul(sl, rnd({4, 3}, 18)), ref_matmul(sl.contiguous(), rnd({4, 3}, 18)), 1e-12, 1e-12));

  Tensor x = rnd({5, 3}, 19).set_requires_grad(), y = rnd({2, 4, 5}, 20).set_requires_grad();
  auto f = [](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1].transpose(1, 2)); };
  GradcheckResult r = gradcheck(f, {x, y});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Matmul, ManySmallAndLargeProductsF32) {
  set_num_threads(2);
  // Many small products run one per thread; a large one threads inside the GEMM.
  for (auto [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{64, 16, 12}, {64, 12, 10}}, {{2, 96, 80}, {80, 70}},
                                                            {{150, 200}, {200, 130}}}) {
    Tensor a = rnd(sa, 21, DType::F32).set_requires_grad(), b = rnd(sb, 22, DType::F32).set_requires_grad();
    Tensor y = matmul(a, b);
    EXPECT_TRUE(AllClose(y.to(DType::F64), ref_matmul(a.to(DType::F64), b.to(DType::F64)), 1e-4, 1e-4));
    Tensor g = rnd(y.shape(), 23, DType::F32);
    y.backward(g);
    // dA = g b^T, dB = a^T g (summed over a broadcast batch).
    Tensor ga = ref_matmul(g.to(DType::F64), b.to(DType::F64).transpose(-1, -2).contiguous());
    Tensor gb = ref_matmul(a.to(DType::F64).transpose(-1, -2).contiguous(), g.to(DType::F64));
    if (gb.dim() > b.dim()) gb = kernels::sum_to(gb, b.shape());
    EXPECT_TRUE(AllClose(a.grad().to(DType::F64), ga, 1e-4, 1e-3));
    EXPECT_TRUE(AllClose(b.grad().to(DType::F64), gb, 1e-4, 1e-3));
  }
}

TEST(Matmul, Errors) {
  try {
    matmul(zeros({2, 3}), zeros({4, 5}));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("matmul"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 5]"), std::string::npos) << m;
  }
  EXPECT_THROW(matmul(zeros({3}), zeros({4})), Error);
  EXPECT_THROW(matmul(zeros({2, 3, 4}), zeros({3, 4, 5})), Error);  // batch 2 vs 3 do not broadcast
  EXPECT_THROW(matmul(zeros({2, 3}), zeros({3, 4}, DType::F64)), Error);
  EXPECT_THROW(matmul(zeros({2, 3}, DType::I32), zeros({3, 4}, DType::I32)), Error);
  EXPECT_THROW(matmul(scalar_tensor(1.0), zeros({3})), Error);
  // Empty inner dimension gives zeros; empty batches and rows give empty results.
  EXPECT_TRUE(AllClose(matmul(zeros({2, 0}), zeros({0, 3})), zeros({2, 3}), 0, 0));
  EXPECT_EQ(matmul(zeros({0, 3, 4}), zeros({4, 5})).shape(), (Shape{0, 3, 5}));
  EXPECT_EQ(matmul(zeros({2, 0, 4}), zeros({2, 4, 5})).shape(), (Shape{2, 0, 5}));
  EXPECT_EQ(linear(zeros({0, 4}), zeros({3, 4}), zeros({3})).shape(), (Shape{0, 3}));
}

TEST(Linear, ForwardMatchesNaive) {
  for (bool with_bias : {true, false}) {
    Tensor x = rnd({2, 3, 5}, 30), w = rnd({4, 5}, 31), b = with_bias ? rnd({4}, 32) : Tensor();
    Tensor want = ref_matmul(x, w.t().contiguous());
    if (with_bias) want = kernels::add(want, b);
    EXPECT_TRUE(AllClose(linear(x, w, b), want, 1e-12, 1e-12));
    EXPECT_TRUE(AllClose(linear(x.to(DType::F32), w.to(DType::F32), with_bias ? b.to(DType::F32) : Tensor())
                             .to(DType::F64),
                         want, 1e-5, 1e-5));
    // 1-D input, and a weight given as a transposed view.
    Tensor v = rnd({5}, 33);
    Tensor wt_store = w.t().contiguous();  // [5, 4]
    EXPECT_TRUE(AllClose(linear(v, wt_store.t(), b), linear(v.reshape({1, 5}), w, b).reshape({4}), 1e-12, 1e-12));
  }
}

TEST(Linear, Gradcheck) {
  for (bool with_bias : {true, false}) {
    Tensor x = rnd({3, 5}, 40).set_requires_grad(), w = rnd({4, 5}, 41).set_requires_grad();
    Tensor b = with_bias ? rnd({4}, 42).set_requires_grad() : Tensor();
    auto f = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
    GradcheckResult r = gradcheck(f, {x, w, b});
    EXPECT_TRUE(r.ok) << "bias=" << with_bias << ": " << r.message;
    // Batched input and a transposed weight view.
    Tensor xb = rnd({2, 3, 5}, 43).set_requires_grad(), wt = rnd({5, 4}, 44).set_requires_grad();
    auto g = [](const std::vector<Tensor>& in) { return linear(in[0], in[1].t(), in[2]); };
    r = gradcheck(g, {xb, wt, b});
    EXPECT_TRUE(r.ok) << "batched, bias=" << with_bias << ": " << r.message;
  }
  // Only the weight requires grad (first layer).
  Tensor x = rnd({3, 5}, 45), w = rnd({2, 5}, 46).set_requires_grad();
  auto f = [&](const std::vector<Tensor>& in) { return linear(x, in[0]); };
  GradcheckResult r = gradcheck(f, {w});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Linear, Errors) {
  try {
    linear(zeros({8, 400}), zeros({120, 399}));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[8, 400]"), std::string::npos) << m;
    EXPECT_NE(m.find("[120, 399]"), std::string::npos) << m;
  }
  EXPECT_THROW(linear(zeros({8, 4}), zeros({3, 4}), zeros({4})), Error);
  EXPECT_THROW(linear(zeros({8, 4}), zeros({3, 4, 1})), Error);
  EXPECT_THROW(linear(zeros({8, 4}), zeros({3, 4}, DType::F64)), Error);
}
