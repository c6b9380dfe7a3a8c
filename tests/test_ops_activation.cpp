#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/cpu/activation_kernels.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

// Independent scalar references written from PyTorch's definitions.
double ref_relu6(double x) { return std::min(std::max(x, 0.0), 6.0); }
double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double ref_gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double ref_gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

struct ActCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
};

const std::vector<ActCase>& act_cases() {
  static const std::vector<ActCase> cases = {
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }},
      {"relu6", [](const Tensor& x) { return relu6(x); }, ref_relu6},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); }, [](double x) { return x > 0 ? x : 0.2 * x; }},
      {"leaky_relu_default", [](const Tensor& x) { return leaky_relu(x); },
       [](double x) { return x > 0 ? x : 0.01 * x; }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, ref_sigmoid},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }},
      {"hardswish", [](const Tensor& x) { return hardswish(x); }, [](double x) { return x * ref_relu6(x + 3) / 6; }},
      {"hardsigmoid", [](const Tensor& x) { return hardsigmoid(x); }, [](double x) { return ref_relu6(x + 3) / 6; }},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x * ref_sigmoid(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }, ref_gelu},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, ref_gelu_tanh},
  };
  return cases;
}

// Points bounded away from every kink (0, 6, +-3) and spanning all pieces.
Tensor kink_free_points() {
  return tensor({-7.5, -4.2, -3.3, -2.7, -1.6, -0.45, -0.08, 0.11, 0.62, 1.3, 2.2, 2.85, 3.2, 4.7, 5.6, 6.4, 8.9,
                 -12.0},
                {3, 6}, DType::F64);
}

}  // namespace

TEST(OpsActivation, HandComputedValues) {
  Tensor x = tensor({-4, -1, 0, 1, 4, 7}, {6}, DType::F64);
  EXPECT_TRUE(AllClose(relu(x), tensor({0, 0, 0, 1, 4, 7}, {6}, DType::F64)));
  EXPECT_TRUE(AllClose(relu6(x), tensor({0, 0, 0, 1, 4, 6}, {6}, DType::F64)));
  EXPECT_TRUE(AllClose(leaky_relu(x, 0.1), tensor({-0.4, -0.1, 0, 1, 4, 7}, {6}, DType::F64)));
  EXPECT_TRUE(AllClose(hardswish(x), tensor({0, -1.0 / 3, 0, 4.0 / 6, 4, 7}, {6}, DType::F64)));
  EXPECT_TRUE(AllClose(hardsigmoid(x), tensor({0, 1.0 / 3, 0.5, 4.0 / 6, 1, 1}, {6}, DType::F64)));
  Tensor y = tensor({0, 1}, {2}, DType::F64);
  EXPECT_TRUE(AllClose(sigmoid(y), tensor({0.5, 0.7310585786300049}, {2}, DType::F64), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(tanh(y), tensor({0, 0.7615941559557649}, {2}, DType::F64), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(silu(y), tensor({0, 0.7310585786300049}, {2}, DType::F64), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(gelu(y), tensor({0, 0.8413447460685429}, {2}, DType::F64), 1e-12, 1e-12));
  EXPECT_TRUE(AllClose(gelu(y, true), tensor({0, 0.8411919906082768}, {2}, DType::F64), 1e-12, 1e-12));
}

TEST(OpsActivation, ForwardMatchesReferenceF32AndF64) {
  // Dense sweep (also long enough for the threaded, vectorised paths) plus extremes.
  std::vector<double> xs;
  for (int i = 0; i <= 40000; ++i) xs.push_back(-20.0 + i * 0.001);
  for (double v : {-80.0, -40.0, 40.0, 80.0}) xs.push_back(v);
  const Shape s = {static_cast<int64_t>(xs.size())};
  Tensor x64 = from_vector<double>(xs, s);
  Tensor x32 = x64.to(DType::F32);
  std::vector<float> xs32 = x32.to_vector<float>();
  for (const auto& c : act_cases()) {
    auto y64 = c.op(x64).to_vector<double>();
    auto y32 = c.op(x32).to_vector<float>();
    for (size_t i = 0; i < xs.size(); ++i) {
      double want = c.ref(xs[i]);
      ASSERT_NEAR(y64[i], want, 1e-12 + 1e-12 * std::abs(want)) << c.name << " f64 at " << xs[i];
      double want32 = c.ref(xs32[i]);  // reference at the f32-rounded input
      ASSERT_NEAR(y32[i], want32, 2e-7 + 2e-6 * std::abs(want32)) << c.name << " f32 at " << xs32[i];
    }
  }
}

TEST(OpsActivation, GradcheckEveryActivation) {
  for (const auto& c : act_cases()) {
    auto op = c.op;
    GradcheckResult r = gradcheck([op](const std::vector<Tensor>& in) { return op(in[0]); },
                                  {kink_free_points().set_requires_grad(true)});
    EXPECT_TRUE(r.ok) << c.name << ": " << r.message;
  }
  // Scalar-shaped and non-contiguous inputs.
  GradcheckResult r0 = gradcheck([](const std::vector<Tensor>& in) { return gelu(in[0]); },
                                 {scalar_tensor(0.7, DType::F64).set_requires_grad(true)});
  EXPECT_TRUE(r0.ok) << r0.message;
  GradcheckResult r1 = gradcheck([](const std::vector<Tensor>& in) { return hardswish(in[0].t()); },
                                 {kink_free_points().set_requires_grad(true)});
  EXPECT_TRUE(r1.ok) << r1.message;
}

TEST(OpsActivation, DerivativesAtKnownPoints) {
  // PyTorch's piecewise derivatives: hardswish 0 / (2x+3)/6 / 1, hardsigmoid 1/6 inside (-3, 3),
  // relu6 only strictly inside (0, 6), leaky_relu slope below 0.
  auto grad_of = [](const std::function<Tensor(const Tensor&)>& op, std::vector<double> pts) {
    Tensor x = from_vector<double>(pts, {static_cast<int64_t>(pts.size())}).set_requires_grad(true);
    op(x).backward(ones(x.shape(), DType::F64));
    return x.grad().to_vector<double>();
  };
  auto hs = grad_of([](const Tensor& x) { return hardswish(x); }, {-4, -3, 1, 3, 4});
  EXPECT_NEAR(hs[0], 0, 1e-15);
  EXPECT_NEAR(hs[1], -0.5, 1e-15);  // (2*(-3)+3)/6 at the closed left end
  EXPECT_NEAR(hs[2], 5.0 / 6, 1e-15);
  EXPECT_NEAR(hs[3], 1.5, 1e-15);  // (2*3+3)/6 at x = 3 (PyTorch uses <= 3)
  EXPECT_NEAR(hs[4], 1, 1e-15);
  EXPECT_EQ(grad_of([](const Tensor& x) { return hardsigmoid(x); }, {-3.5, -3, 1, 3, 3.5}),
            (std::vector<double>{0, 0, 1.0 / 6, 0, 0}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return relu6(x); }, {-1, 0, 3, 6, 7}), (std::vector<double>{0, 0, 1, 0, 0}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return relu(x); }, {-1, 0, 2}), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return leaky_relu(x, 0.3); }, {-1, 0, 2}),
            (std::vector<double>{0.3, 0.3, 1}));
  auto g = grad_of([](const Tensor& x) { return gelu(x); }, {0, 1});
  EXPECT_NEAR(g[0], 0.5, 1e-15);
  EXPECT_NEAR(g[1], 0.8413447460685429 + std::exp(-0.5) / std::sqrt(2 * M_PI), 1e-14);
}

TEST(OpsActivation, F32BackwardMatchesF64) {
  Tensor x64 = kink_free_points();
  Generator gen(5);
  Tensor g64 = randn(x64.shape(), DType::F64, &gen);
  for (const auto& c : act_cases()) {
    Tensor a = x64.clone().set_requires_grad(true);
    Tensor b = x64.to(DType::F32).set_requires_grad(true);
    c.op(a).backward(g64);
    c.op(b).backward(g64.to(DType::F32));
    EXPECT_EQ(b.grad().dtype(), DType::F32);
    EXPECT_TRUE(AllClose(b.grad(), a.grad(), 1e-5, 1e-6)) << c.name;
  }
}

TEST(OpsActivation, ReluInplaceEqualsOutOfPlace) {
  Tensor x0 = kink_free_points();
  Generator gen(9);
  Tensor g = randn(x0.shape(), DType::F64, &gen);
  Tensor xa = x0.clone().set_requires_grad(true);
  Tensor ya = relu(mul(xa, 2.0));
  ya.backward(g);
  Tensor xb = x0.clone().set_requires_grad(true);
  Tensor yb = mul(xb, 2.0);
  Tensor& r = relu_(yb);
  EXPECT_TRUE(r.is_same(yb));
  EXPECT_EQ(yb.grad_fn()->name(), "relu_");
  EXPECT_TRUE(AllClose(yb, ya, 0, 0));
  yb.backward(g);
  EXPECT_TRUE(AllClose(xb.grad(), xa.grad(), 0, 0));
  GradcheckResult res = gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor t = in[0].clone();
        return relu_(t);
      },
      {x0.clone().set_requires_grad(true)});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(OpsActivation, ReluInplaceOnViewAndLeaf) {
  Tensor base = tensor({-1, 2, -3, 4, -5, 6}, {2, 3});
  Tensor col = base.t().narrow(0, 1, 1);  // base[:, 1] = {2, -5}, strided
  relu_(col);
  EXPECT_EQ(base.to_vector<float>(), (std::vector<float>{-1, 2, -3, 4, 0, 6}));
  Tensor w = tensor({-1, 1}, {2}).set_requires_grad(true);
  std::string msg = error_of([&] { relu_(w); });
  EXPECT_NE(msg.find("relu_"), std::string::npos) << msg;
  EXPECT_NE(msg.find("leaf"), std::string::npos) << msg;
  {
    NoGradGuard ng;
    relu_(w);
  }
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{0, 1}));
}

TEST(OpsActivation, ModifiedSavedOutputThrowsOnBackward) {
  Tensor x = kink_free_points().set_requires_grad(true);
  Tensor y = sigmoid(x);  // saves its output
  relu_(y);
  std::string msg = error_of([&] { y.backward(ones(y.shape(), DType::F64)); });
  EXPECT_NE(msg.find("sigmoid"), std::string::npos) << msg;
  EXPECT_NE(msg.find("modified in place"), std::string::npos) << msg;
  Tensor z = relu(mul(x, 1.0));  // saves its output
  mul_(z, 3.0);
  EXPECT_THROW(z.backward(ones(z.shape(), DType::F64)), Error);
}

TEST(OpsActivation, NonContiguousInput) {
  Tensor x = kink_free_points().to(DType::F32);
  for (const auto& c : act_cases()) EXPECT_TRUE(AllClose(c.op(x.t()), c.op(x).t(), 0, 0)) << c.name;
}

TEST(OpsActivation, IntegerInputRejected) {
  Tensor i = from_vector<int32_t>({1, -1}, {2});
  std::string msg = error_of([&] { relu(i); });
  EXPECT_NE(msg.find("relu"), std::string::npos) << msg;
  EXPECT_NE(msg.find("i32"), std::string::npos) << msg;
  EXPECT_THROW(gelu(i), Error);
  EXPECT_THROW(relu_(i), Error);
}

TEST(OpsActivation, FusedApplyMatchesOp) {
  // The raw-buffer entry point used by fused layers agrees with the op.
  Tensor x = kink_free_points().to(DType::F32);
  std::vector<float> buf = x.to_vector<float>();
  cpu::activation_apply(buf.data(), buf.data(), static_cast<int64_t>(buf.size()), cpu::Activation::Hardswish);
  EXPECT_EQ(buf, hardswish(x).to_vector<float>());
}

TEST(OpsActivation, ReluLargeTensorStreamingPath) {
  // Above 16 MB the f32 relu forward/backward switch to streaming stores; odd length for the tails.
  const int64_t n = (int64_t(1) << 22) + 37;
  Generator gen(3);
  Tensor x = randn({n}, DType::F32, &gen);
  float* px = x.data<float>();
  px[5] = std::numeric_limits<float>::quiet_NaN();
  px[n - 2] = -0.0f;
  Tensor xr = x.clone().set_requires_grad(true);
  Tensor y = relu(xr);
  Tensor g = randn({n}, DType::F32, &gen);
  y.backward(g);
  const float* py = y.data<float>();
  const float* pg = g.data<float>();
  const float* pgrad = xr.grad().data<float>();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (i == 5) continue;
    float want = px[i] > 0 ? px[i] : 0.0f;
    float want_g = px[i] > 0 ? pg[i] : 0.0f;
    bad += (py[i] != want) + (pgrad[i] != want_g);
  }
  EXPECT_EQ(bad, 0);
  EXPECT_TRUE(std::isnan(py[5]));
  EXPECT_EQ(py[n - 1], px[n - 1] > 0 ? px[n - 1] : 0.0f);
}
