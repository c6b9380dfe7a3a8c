// Gradient buffer reuse in backward (autograd/grad_buffer.h): the engine accumulates in place and
// activations, batch norm and AccumulateGrad take over incoming gradients only when nothing else
// holds them. Shared gradients, user seeds and views must come out unchanged.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/grad_buffer.h"
#include "autograd/ops.h"
#include "core/cpu/activation_kernels.h"
#include "core/factory.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

// Values kept away from the ReLU kink at 0 and the ReLU6 kink at 6.
Tensor away_from_kinks(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  Tensor u = uniform(shape, 0.2, 2.0, DType::F64, &g);
  Tensor sign = randint(0, 2, shape, DType::F64, &g) * 2.0 - 1.0;
  return u * sign;
}

TEST(GradBuffers, ExclusiveOwnership) {
  Tensor a = randn({4, 5});
  EXPECT_TRUE(exclusively_owned(a));
  Tensor alias = a;
  EXPECT_FALSE(exclusively_owned(a));  // a second handle
  alias = Tensor();
  EXPECT_TRUE(exclusively_owned(a));
  Tensor view = a.reshape({20});
  EXPECT_FALSE(exclusively_owned(a));  // a view shares the storage
  EXPECT_FALSE(exclusively_owned(view));
  view = Tensor();
  EXPECT_FALSE(exclusively_owned(a.t()));  // not contiguous (and a view)
  EXPECT_FALSE(exclusively_owned(Tensor()));
}

TEST(GradBuffers, ActivationBackwardInPlaceMatchesOutOfPlace) {
  for (auto act : {cpu::Activation::Relu, cpu::Activation::Relu6, cpu::Activation::Sigmoid, cpu::Activation::Gelu}) {
    Generator gen(3);
    Tensor x = randn({3, 1000}, DType::F32, &gen) * 4.0;
    Tensor saved = cpu::activation_backward_uses_output(act) ? cpu::activation_forward(x, act) : x;
    Tensor g = randn({3, 1000}, DType::F32, &gen);
    Tensor want = cpu::activation_backward(g, saved, act);
    Tensor inplace = g.clone();
    cpu::activation_backward_inplace(inplace, saved, act);
    EXPECT_TRUE(AllClose(inplace, want, 0.0, 0.0)) << cpu::activation_name(act);
  }
}

TEST(GradBuffers, UserSeedGradientIsNotOverwritten) {
  Tensor x = away_from_kinks({6, 7}, 1).set_requires_grad();
  Tensor y = relu6(relu(x) * 3.0);
  Tensor seed = randn({6, 7}, DType::F64);
  Tensor copy = seed.clone();
  y.backward(seed);
  EXPECT_TRUE(AllClose(seed, copy, 0.0, 0.0));
}

TEST(GradBuffers, GradientSharedByTwoConsumersStaysIntact) {
  // add() hands the same gradient to both branches; each must leave it for the other.
  Tensor x = away_from_kinks({5, 8}, 2).set_requires_grad();
  Tensor a = x * 2.0;
  Tensor y = relu(a) + sigmoid(a);
  Tensor g = randn({5, 8}, DType::F64);
  sum(y * g).backward();
  std::vector<double> xv = x.to_vector<double>(), gv = g.to_vector<double>(), want(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) {
    const double av = 2.0 * xv[i];
    const double sg = 1.0 / (1.0 + std::exp(-av));
    want[i] = 2.0 * gv[i] * ((av > 0 ? 1.0 : 0.0) + sg * (1.0 - sg));
  }
  EXPECT_TRUE(AllClose(x.grad(), from_vector(want, x.shape()), 1e-12, 1e-12));
}

TEST(GradBuffers, LeafGradientAccumulatesAcrossBackwardCalls) {
  Tensor x = away_from_kinks({4, 4}, 3).set_requires_grad();
  sum(relu(x * 3.0)).backward();
  Tensor first = x.grad().clone();
  sum(relu(x * 3.0)).backward();
  EXPECT_TRUE(AllClose(x.grad(), first * 2.0, 1e-12, 1e-12));
  // The kept buffer is x's own: no other tensor shares its storage and sees later accumulations.
  EXPECT_EQ(x.grad().impl().storage.use_count(), 1);
}

TEST(GradBuffers, GradcheckThroughReusingOps) {
  // batch_norm, relu and relu6 receive exclusively owned gradients from their consumers here, and
  // x feeds three consumers, so the engine accumulates in place.
  Tensor x = away_from_kinks({4, 3, 2, 2}, 4).set_requires_grad();
  Tensor w = (uniform({3}, 0.5, 1.5, DType::F64)).set_requires_grad();
  Tensor b = randn({3}, DType::F64).set_requires_grad();
  auto f = [](const std::vector<Tensor>& in) {
    Tensor h = batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true);
    Tensor r = relu6(relu(h * 2.0) * 3.0) + in[0] * in[0] + sigmoid(in[0]);
    return r * 0.5;
  };
  GradcheckResult r = gradcheck(f, {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
}

}  // namespace
