// batch_norm_act: the fused activation must match relu / relu6 applied to batch_norm's output, in
// values, running statistics and gradients (finite differences in f64 with inputs kept away from
// the activation kinks; the unfused composition in f32 at model sizes).
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/factory.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

Tensor apply(BnActivation act, const Tensor& t) {
  if (act == BnActivation::Relu) return relu(t);
  if (act == BnActivation::Relu6) return relu6(t);
  return t;
}

const char* name(BnActivation act) { return act == BnActivation::Relu ? "relu" : "relu6"; }

struct Inputs {
  Tensor x, w, b;
};

// Weights large enough that ReLU6 clips some outputs at 6 as well as at 0.
Inputs make_inputs(const Shape& shape, DType dt, uint64_t seed) {
  Generator gen(seed);
  const int64_t C = shape[1];
  return {randn(shape, dt, &gen) * 2.0 + 0.5, uniform({C}, 1.0, 4.0, dt, &gen), randn({C}, dt, &gen)};
}

TEST(BatchNormAct, ForwardAndRunningStatsMatchComposition) {
  for (BnActivation act : {BnActivation::Relu, BnActivation::Relu6}) {
    for (const Shape& shape : {Shape{6, 5, 4, 3}, Shape{9, 7}, Shape{4, 3, 7}}) {
      for (bool training : {true, false}) {
        Inputs in = make_inputs(shape, DType::F64, 1);
        const int64_t C = shape[1];
        Generator gen(2);
        Tensor rm0 = randn({C}, DType::F64, &gen), rv0 = uniform({C}, 0.5, 2.0, DType::F64, &gen);
        Tensor rm1 = rm0.clone(), rv1 = rv0.clone(), rm2 = rm0.clone(), rv2 = rv0.clone();
        Tensor want = apply(act, batch_norm(in.x, rm1, rv1, in.w, in.b, training, 0.3, 1e-4));
        Tensor got = batch_norm_act(in.x, rm2, rv2, in.w, in.b, training, act, 0.3, 1e-4);
        EXPECT_TRUE(AllClose(got, want, 1e-12, 1e-12)) << name(act) << " " << shape_str(shape);
        EXPECT_TRUE(AllClose(rm2, rm1, 0.0, 0.0));
        EXPECT_TRUE(AllClose(rv2, rv1, 0.0, 0.0));
      }
    }
  }
}

TEST(BatchNormAct, ClipsAtBothEnds) {
  Tensor x = tensor({-3, -1, 0.5, 1, 2, 30}, {6, 1});
  Tensor y = batch_norm_act(x, Tensor(), Tensor(), tensor({4.0}, {1}), tensor({1.0}, {1}), true, BnActivation::Relu6);
  std::vector<double> v = y.to_vector<double>();
  EXPECT_EQ(v[0], 0.0);
  EXPECT_EQ(v[5], 6.0);
  for (double e : v) EXPECT_TRUE(e >= 0.0 && e <= 6.0);
  EXPECT_TRUE(std::isnan(
      batch_norm_act(tensor({NAN, 1.0}, {2, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true, BnActivation::Relu)
          .to_vector<double>()[0]));
}

TEST(BatchNormAct, GradcheckAwayFromKinks) {
  for (BnActivation act : {BnActivation::Relu, BnActivation::Relu6}) {
    for (bool training : {true, false}) {
      Inputs in = make_inputs({5, 3, 2, 3}, DType::F64, 7);
      Tensor rm = zeros({3}, DType::F64), rv = ones({3}, DType::F64);
      // The pre-activation values must sit well clear of 0 and 6 for central differences.
      Tensor pre = batch_norm(in.x, rm.clone(), rv.clone(), in.w, in.b, training);
      for (double v : pre.to_vector<double>()) {
        ASSERT_GT(std::fabs(v), 1e-3) << "kink at 0";
        ASSERT_GT(std::fabs(v - 6.0), 1e-3) << "kink at 6";
      }
      in.x.set_requires_grad();
      in.w.set_requires_grad();
      in.b.set_requires_grad();
      auto f = [&](const std::vector<Tensor>& v) {
        return batch_norm_act(v[0], rm.clone(), rv.clone(), v[1], v[2], training, act);
      };
      GradcheckResult r = gradcheck(f, {in.x, in.w, in.b});
      EXPECT_TRUE(r.ok) << name(act) << (training ? " training: " : " eval: ") << r.message;
    }
  }
}

TEST(BatchNormAct, F32GradientsMatchComposition) {
  for (BnActivation act : {BnActivation::Relu, BnActivation::Relu6}) {
    for (const Shape& shape : {Shape{16, 24, 7, 7}, Shape{8, 16, 28, 28}}) {
      Inputs a = make_inputs(shape, DType::F32, 11), b = make_inputs(shape, DType::F32, 11);
      for (Inputs* in : {&a, &b}) {
        in->x.set_requires_grad();
        in->w.set_requires_grad();
        in->b.set_requires_grad();
      }
      Generator gen(3);
      Tensor g = randn(shape, DType::F32, &gen);
      apply(act, batch_norm(a.x, Tensor(), Tensor(), a.w, a.b, true)).backward(g);
      batch_norm_act(b.x, Tensor(), Tensor(), b.w, b.b, true, act).backward(g);
      EXPECT_TRUE(AllClose(b.x.grad(), a.x.grad(), 1e-4, 1e-5)) << name(act) << " " << shape_str(shape);
      EXPECT_TRUE(AllClose(b.w.grad(), a.w.grad(), 1e-4, 1e-3)) << name(act);
      EXPECT_TRUE(AllClose(b.b.grad(), a.b.grad(), 1e-4, 1e-3)) << name(act);
    }
  }
}

}  // namespace
