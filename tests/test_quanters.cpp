// Quanters (quant/*_quanter.h) and the quanter factory: statistics step by step against
// hand-computed thresholds, eval freezing, checkpoint round trips and option errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "nn/activation.h"
#include "quant/abs_max_quanter.h"
#include "quant/act_lsq_plus_quanter.h"
#include "quant/channel_wise_abs_max_quanter.h"
#include "quant/moving_average_abs_max_quanter.h"
#include "quant/pact_quanter.h"
#include "quant/quanter_factory.h"
#include "quant/range_abs_max_quanter.h"
#include "quant/weight_lsq_plus_quanter.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

Tensor vec(std::initializer_list<double> v, DType dt = DType::F32) {
  return tensor(v, {static_cast<int64_t>(v.size())}, dt);
}

// A batch whose abs-max is m.
Tensor batch(double m) { return vec({m, -m / 2, m / 4}); }

double buf(const nn::Module& m, const std::string& name) { return m.buffer(name).item(); }

void expect_rel(double got, double want, double rtol = 1e-6) {
  EXPECT_NEAR(got, want, rtol * std::abs(want)) << "want " << want;
}

}  // namespace

// ---- moving_average_abs_max ----

TEST(MovingAverageAbsMax, ThreeBatchesDefaultInit) {
  MovingAverageAbsMaxQuanter q;  // r = 0.9, state = accum = 0, activation: int8 signed, qmax 127
  EXPECT_EQ(q.grid(), QuantGrid(8, GridKind::Signed));
  // Batch abs-maxes 2, 4, 1:
  // state 1, accum 2 -> T = 2; state 1.9, accum 5.8 -> T = 3.0526...; state 2.71, accum 6.22.
  const double states[] = {1.0, 1.9, 2.71}, accums[] = {2.0, 5.8, 6.22};
  const double maxes[] = {2, 4, 1};
  for (int i = 0; i < 3; ++i) {
    Tensor y = q.forward(batch(maxes[i]));
    expect_rel(buf(q, "state"), states[i]);
    expect_rel(buf(q, "accum"), accums[i]);
    const double t = accums[i] / states[i];
    expect_rel(q.threshold(), t);
    expect_rel(q.quant_params().scales()[0], t / 127);
    if (i == 0) expect_rel(y.to_vector<double>()[0], 2.0);  // the batch max sits on the grid top
  }
  expect_rel(q.threshold(), 2.2952029520295203);
}

TEST(MovingAverageAbsMax, ThreeBatchesPaddleParityInit) {
  MovingAverageAbsMaxOptions o;
  o.paddle_parity_init = true;
  MovingAverageAbsMaxQuanter q(o);
  EXPECT_EQ(buf(q, "state"), 1.0);
  EXPECT_EQ(buf(q, "accum"), 1.0);
  // state 1.9, accum 2.9; state 2.71, accum 6.61; state 3.439, accum 6.949.
  const double states[] = {1.9, 2.71, 3.439}, accums[] = {2.9, 6.61, 6.949};
  const double maxes[] = {2, 4, 1};
  const double thresholds[] = {2.9 / 1.9, 6.61 / 2.71, 6.949 / 3.439};  // 1.5263..., 2.4391..., 2.0206...
  for (int i = 0; i < 3; ++i) {
    q.forward(batch(maxes[i]));
    expect_rel(buf(q, "state"), states[i]);
    expect_rel(buf(q, "accum"), accums[i]);
    expect_rel(q.threshold(), thresholds[i]);
  }
}

TEST(MovingAverageAbsMax, EvalUsesFrozenThreshold) {
  MovingAverageAbsMaxQuanter q;
  q.forward(batch(2));
  q.forward(batch(4));
  const double t = 5.8 / 1.9;
  q.eval();
  Tensor x = vec({100, 1}).set_requires_grad(true);
  Tensor y = q.forward(x);
  expect_rel(y.to_vector<double>()[0], t);  // clipped to the frozen T
  expect_rel(buf(q, "state"), 1.9);         // no update in eval
  expect_rel(q.threshold(), t);
  y.backward(ones({2}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1}));  // clipped STE at the frozen T
}

TEST(MovingAverageAbsMax, EvalBeforeTrainingUsesCurrentAbsMax) {
  MovingAverageAbsMaxQuanter q;
  q.eval();
  Tensor y = q.forward(vec({0.3, -1}));
  // s = 1/127: 0.3 -> round(38.1) = 38.
  expect_rel(y.to_vector<double>()[0], 38.0 / 127);
  expect_rel(y.to_vector<double>()[1], -1.0);
  EXPECT_EQ(buf(q, "state"), 0.0);
  EXPECT_NE(error_of([&] { q.quant_params(); }).find("no statistics yet"), std::string::npos);
}

// ---- range_abs_max ----

TEST(RangeAbsMax, WindowOfThreeWithEvictions) {
  RangeAbsMaxOptions o;
  o.window_size = 3;
  RangeAbsMaxQuanter q(o);
  // Batches and the expected T = max of the last three:
  //  1 -> [1] 1;  5 -> [1,5] 5;  2 -> [1,5,2] 5;  3 evicts 1 -> [3,5,2] 5;
  //  4 evicts 5 (the max) -> [3,4,2] 4;  0.5 evicts 2 -> [3,4,0.5] 4;  0.7 evicts 3 -> [0.7,4,0.5] 4;
  //  0.6 evicts 4 (the max) -> [0.7,0.6,0.5] 0.7;  9 evicts 0.5 -> [0.7,0.6,9] 9.
  const std::vector<double> in = {1, 5, 2, 3, 4, 0.5, 0.7, 0.6, 9};
  const std::vector<double> want = {1, 5, 5, 5, 4, 4, 4, 0.7, 9};
  for (size_t i = 0; i < in.size(); ++i) {
    q.forward(batch(in[i]));
    EXPECT_EQ(buf(q, "threshold"), static_cast<float>(want[i])) << "batch " << i;
    expect_rel(q.threshold(), static_cast<float>(want[i]));
    EXPECT_EQ(buf(q, "iter"), static_cast<double>(i + 1));
  }
  EXPECT_EQ(q.buffer("window").to_vector<double>(), (std::vector<double>{0.7f, 0.6f, 9}));
}

TEST(RangeAbsMax, EvalUsesFrozenThreshold) {
  RangeAbsMaxOptions o;
  o.window_size = 3;
  RangeAbsMaxQuanter q(o);
  q.forward(batch(2));
  q.eval();
  Tensor y = q.forward(vec({50, -0.5}));
  expect_rel(y.to_vector<double>()[0], 2.0);
  EXPECT_EQ(buf(q, "iter"), 1.0);
  EXPECT_EQ(buf(q, "threshold"), 2.0);
  q.train();
  q.forward(batch(3));
  EXPECT_EQ(buf(q, "threshold"), 3.0);
  EXPECT_NE(error_of([] {
              RangeAbsMaxOptions bad;
              bad.window_size = 0;
              RangeAbsMaxQuanter r(bad);
            }).find("window_size must be >= 1, got 0"),
            std::string::npos);
}

// ---- abs_max and channel_wise_abs_max ----

TEST(AbsMax, ThresholdFollowsCurrentTensorInTrainAndEval) {
  QuantOptions o;
  o.role = QuantRole::Weight;
  AbsMaxQuanter q(o);
  EXPECT_EQ(q.grid(), QuantGrid(8, GridKind::Narrow));
  EXPECT_NE(error_of([&] { q.quant_params(); }).find("no statistics yet"), std::string::npos);
  Tensor y = q.forward(vec({3, -1}));
  expect_rel(q.threshold(), 3.0);
  // s = 3/127: -1/s = -42.33 -> -42.
  expect_rel(y.to_vector<double>()[1], -42.0 * 3 / 127);
  q.eval();
  q.forward(vec({-5, 1}));
  expect_rel(q.threshold(), 5.0);
  EXPECT_EQ(q.quant_params().axis, -1);
  EXPECT_TRUE(q.quant_params().symmetric());
}

TEST(ChannelWiseAbsMax, OneThresholdPerChannel) {
  Tensor x = tensor({1, -7, 3, 2, -0.5, 4}, {2, 3});
  ChannelWiseAbsMaxOptions o;
  o.role = QuantRole::Weight;
  o.axis = 0;
  o.channels = 2;
  ChannelWiseAbsMaxQuanter q0(o);
  Tensor y = q0.forward(x);
  QuantParams p = q0.quant_params();
  EXPECT_EQ(p.axis, 0);
  EXPECT_EQ(p.grid, QuantGrid(8, GridKind::Narrow));
  auto s = p.scales();
  ASSERT_EQ(s.size(), 2u);
  expect_rel(s[0], 7.0 / 127);
  expect_rel(s[1], 4.0 / 127);
  expect_rel(q0.threshold(), 7.0);
  // Row 1 uses s = 4/127: 2 -> round(63.5) tie -> 64 (half even); -0.5 -> round(-15.875) = -16.
  auto yv = y.to_vector<double>();
  expect_rel(yv[4], -16.0 * 4 / 127);
  expect_rel(yv[5], 4.0);
  o.axis = 1;
  o.channels = 3;
  ChannelWiseAbsMaxQuanter q1(o);
  q1.forward(x);
  auto s1 = q1.quant_params().scales();
  expect_rel(s1[0], 2.0 / 127);
  expect_rel(s1[1], 7.0 / 127);
  expect_rel(s1[2], 4.0 / 127);
  EXPECT_NE(error_of([&] {
              q1.forward(zeros({3, 2}));
            }).find("input [3, 2] does not have 3 channels along axis 1"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { ChannelWiseAbsMaxQuanter bad(ChannelWiseAbsMaxOptions{}); }).find("channels must be positive"),
      std::string::npos);
}

TEST(AbsMax, AllZeroInputGivesFiniteOutputAndGradient) {
  AbsMaxQuanter q;
  Tensor x = zeros({2, 3}).set_requires_grad(true);
  Tensor y = q.forward(x);
  EXPECT_TRUE(AllClose(y, zeros({2, 3}), 0, 0));
  y.backward(ones({2, 3}));
  EXPECT_TRUE(AllClose(x.grad(), ones({2, 3}), 0, 0));
  EXPECT_EQ(q.quant_params().scales()[0], static_cast<double>(static_cast<float>(kScaleFloor)));
}

// ---- PACT ----

TEST(Pact, ClipsBeforeTheInnerQuanterAndTrainsAlpha) {
  auto q = std::make_shared<PactQuanter>(std::make_shared<AbsMaxQuanter>(), PactOptions{20.0, true, 0.5});
  EXPECT_EQ(q->alpha().item(), 20.0);
  Tensor x = vec({5, 25, 30}).set_requires_grad(true);
  Tensor y = q->forward(x);
  // Clipped to [5, 20, 20]; abs-max 20 -> s = 20/127; 5/s = 31.75 -> 32.
  auto yv = y.to_vector<double>();
  expect_rel(yv[0], 32.0 * 20 / 127);
  expect_rel(yv[1], 20.0);
  expect_rel(yv[2], 20.0);
  expect_rel(q->threshold(), 20.0);
  y.backward(ones({3}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(q->alpha().grad().item(), 2.0);  // two elements above alpha
  // Two-sided: one element below -alpha cancels one above.
  q->zero_grad();
  q->forward(vec({-30, 5, 25})).backward(ones({3}));
  EXPECT_EQ(q->alpha().grad().item(), 0.0);
  // One-sided: negative values clip to 0 and give alpha no gradient.
  auto q1 = std::make_shared<PactQuanter>(std::make_shared<AbsMaxQuanter>(), PactOptions{20.0, false, 0.0});
  q1->forward(vec({-30, 5, 25})).backward(ones({3}));
  EXPECT_EQ(q1->alpha().grad().item(), 1.0);
  // L2 on alpha: 0.5 * 20^2, gradient 2 * 0.5 * 20.
  q->zero_grad();
  Tensor l2 = q->l2_loss();
  EXPECT_EQ(l2.item(), 200.0);
  l2.backward();
  EXPECT_EQ(q->alpha().grad().item(), 20.0);
}

// ---- LSQ ----

TEST(WeightLsq, InitialisationPerTensorAndPerChannel) {
  Tensor w = vec({1, -1, 3, -3});
  WeightLSQplusQuanter plus;  // LSQ+ init: max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1)
  EXPECT_EQ(plus.grid(), QuantGrid(8, GridKind::Narrow));
  EXPECT_EQ(plus.role(), QuantRole::Weight);
  EXPECT_FALSE(plus.initialized());
  plus.forward(w);
  EXPECT_TRUE(plus.initialized());
  expect_rel(plus.step().item(), 3 * std::sqrt(20.0 / 3) / 128);
  WeightLsqOptions o;
  o.init = LsqInit::Lsq;  // 2 * mean|w| / sqrt(qmax)
  WeightLSQplusQuanter lsq(o);
  lsq.forward(w);
  expect_rel(lsq.step().item(), 2 * 2 / std::sqrt(127.0));
  // Per channel along axis 0: channel 0 = [1, 3] (mean 2, sigma sqrt 2), channel 1 = [-2, -2].
  WeightLsqOptions pc;
  pc.per_channel = true;
  pc.axis = 0;
  pc.channels = 2;
  WeightLSQplusQuanter qc(pc);
  Tensor wc = tensor({1, 3, -2, -2}, {2, 2}).set_requires_grad(true);
  Tensor y = qc.forward(wc);
  auto s = qc.step().to_vector<double>();
  expect_rel(s[0], (2 + 3 * std::sqrt(2.0)) / 128);
  expect_rel(s[1], 2.0 / 128);
  EXPECT_EQ(qc.quant_params().axis, 0);
  expect_rel(qc.quant_params().scales()[1], 2.0 / 128);
  // The step is learnable: backward reaches it (the op's gradients are checked in test_fake_quant).
  y.backward(ones({2, 2}));
  ASSERT_TRUE(qc.step().grad().defined());
  EXPECT_EQ(qc.step().grad().shape(), (Shape{2}));
  // A second forward does not re-initialise.
  {
    NoGradGuard ng;
    qc.step().fill_(0.5);
  }
  qc.forward(wc);
  EXPECT_EQ(qc.step().to_vector<double>(), (std::vector<double>{0.5, 0.5}));
  EXPECT_NE(error_of([] {
              WeightLsqOptions bad;
              bad.ste = SteMode::Identity;
              WeightLSQplusQuanter q(bad);
            }).find("ste must be clipped"),
            std::string::npos);
}

TEST(ActLsq, ZeroPointIsClampedOntoTheGrid) {
  // Data in [1.5, 3]: beta = 1.5 + 128 s, so -beta / s = -383, far below the grid's -128. The
  // converted zero point must stay on the grid (0.0 exactly representable).
  ActLSQplusQuanter q;
  q.forward(vec({1.5, 2, 3}));
  const double s = 1.5 / 255;
  expect_rel(q.beta().item(), 1.5 + 128 * s);
  EXPECT_EQ(q.quant_params().zero_points()[0], -128);
}

TEST(ActLsq, InitialisationFromFirstBatchAndZeroPoint) {
  Tensor x = vec({-1, 3, 0.5});
  ActLSQplusQuanter q;  // signed int8 [-128, 127], learnable beta
  EXPECT_NE(error_of([&] { q.quant_params(); }).find("no step yet"), std::string::npos);
  Tensor y = q.forward(x);
  const double s = 4.0 / 255, beta = -1 + 128 * s;
  expect_rel(q.step().item(), s);
  expect_rel(q.beta().item(), beta);
  // The batch's min and max land on the grid ends.
  auto yv = y.to_vector<double>();
  EXPECT_NEAR(yv[0], -1.0, 1e-6);
  EXPECT_NEAR(yv[1], 3.0, 1e-6);
  // z = round(-beta / s) = round(-64.25) = -64.
  QuantParams p = q.quant_params();
  EXPECT_EQ(p.zero_points()[0], -64);
  EXPECT_FALSE(p.symmetric());
  ActLsqOptions uo;
  uo.grid = GridKind::Unsigned;
  uo.rounding = Rounding::HalfAway;
  ActLSQplusQuanter qu(uo);
  qu.forward(x);
  expect_rel(qu.step().item(), s);
  expect_rel(qu.beta().item(), -1.0);
  EXPECT_EQ(qu.quant_params().zero_points()[0], 64);  // round(63.75)
  EXPECT_EQ(qu.quant_params().rounding, Rounding::HalfAway);
  expect_rel(qu.threshold(), 3.0);  // max(|beta|, |beta + 255 s|)
  ActLsqOptions so;
  so.symmetric = true;
  ActLSQplusQuanter qs(so);
  qs.forward(x);
  expect_rel(qs.step().item(), 3.0 / 127);
  EXPECT_FALSE(qs.beta().defined());
  EXPECT_FALSE(qs.has_param("beta"));
  EXPECT_TRUE(qs.quant_params().symmetric());
  // Gradients reach step and beta.
  Tensor xg = vec({-2, 0.7, 5}).set_requires_grad(true);
  q.forward(xg).backward(ones({3}));
  EXPECT_TRUE(q.step().grad().defined());
  EXPECT_TRUE(q.beta().grad().defined());
  EXPECT_EQ(xg.grad().to_vector<double>(), (std::vector<double>{0, 1, 0}));  // -2 and 5 fall outside
}

// ---- checkpoints ----

namespace {
// Copies a's state into b and checks both now quantize identically in eval.
void expect_round_trip(Quanter& a, Quanter& b, const Tensor& x) {
  b.load_state_dict(a.state_dict());
  a.eval();
  b.eval();
  EXPECT_TRUE(AllClose(a.forward(x), b.forward(x), 0, 0)) << a.type_name();
  EXPECT_EQ(a.quant_params().scales(), b.quant_params().scales()) << a.type_name();
  EXPECT_EQ(a.quant_params().zero_points(), b.quant_params().zero_points()) << a.type_name();
}
}  // namespace

TEST(QuanterState, RoundTripThroughStateDict) {
  Tensor x = vec({0.9, -2.3, 1.7, 5.0});
  {
    MovingAverageAbsMaxQuanter a, b;
    a.forward(batch(2));
    a.forward(batch(4));
    expect_round_trip(a, b, x);
    expect_rel(buf(b, "state"), 1.9);
  }
  {
    RangeAbsMaxOptions o;
    o.window_size = 3;
    RangeAbsMaxQuanter a(o), b(o);
    for (double m : {1, 5, 2}) a.forward(batch(m));
    expect_round_trip(a, b, x);
    // The restored window evicts the max exactly as the original does.
    a.train();
    b.train();
    a.forward(batch(3));
    a.forward(batch(4));
    b.forward(batch(3));
    b.forward(batch(4));
    EXPECT_EQ(buf(b, "threshold"), 4.0);
    EXPECT_EQ(buf(a, "threshold"), buf(b, "threshold"));
  }
  {
    ChannelWiseAbsMaxOptions o;
    o.channels = 4;
    ChannelWiseAbsMaxQuanter a(o), b(o);
    a.forward(x);
    b.load_state_dict(a.state_dict());
    EXPECT_EQ(a.quant_params().scales(), b.quant_params().scales());
  }
  {
    WeightLSQplusQuanter a, b;
    a.forward(x);
    {
      NoGradGuard ng;
      a.step().fill_(0.37);
    }
    expect_round_trip(a, b, x);
    EXPECT_TRUE(b.initialized());
    EXPECT_EQ(b.step().item(), static_cast<double>(0.37f));
  }
  {
    ActLSQplusQuanter a, b;
    a.forward(x);
    expect_round_trip(a, b, x);
    EXPECT_EQ(a.beta().item(), b.beta().item());
  }
  {
    auto a = std::make_shared<PactQuanter>(std::make_shared<MovingAverageAbsMaxQuanter>());
    auto b = std::make_shared<PactQuanter>(std::make_shared<MovingAverageAbsMaxQuanter>());
    {
      NoGradGuard ng;
      a->alpha().fill_(1.5);
    }
    a->forward(x);
    auto sd = a->state_dict();
    std::vector<std::string> names;
    for (auto& [n, t] : sd) names.push_back(n);
    EXPECT_EQ(names, (std::vector<std::string>{"alpha", "quanter.scale", "quanter.state", "quanter.accum"}));
    expect_round_trip(*a, *b, x);
    EXPECT_EQ(b->alpha().item(), 1.5);
  }
}

// ---- factory and options ----

TEST(QuanterFactory, MakesEveryTypeWithRoleDefaults) {
  QuanterOptions w;
  w.role = QuantRole::Weight;
  w.channels = 6;
  for (const std::string& type : quanter_types()) {
    QuanterPtr q = make_quanter(type, w);
    EXPECT_EQ(q->type_name(), type);
    EXPECT_EQ(q->grid(), QuantGrid(8, GridKind::Narrow)) << type;
  }
  QuanterOptions a;
  a.role = QuantRole::Activation;
  EXPECT_EQ(make_quanter("moving_average_abs_max", a)->grid(), QuantGrid(8, GridKind::Signed));
  a.grid = GridKind::Unsigned;
  a.bits = 4;
  EXPECT_EQ(make_quanter("abs_max", a)->grid(), QuantGrid(4, GridKind::Unsigned));
  EXPECT_TRUE(std::dynamic_pointer_cast<WeightLSQplusQuanter>(make_quanter("lsq_plus", w)));
  EXPECT_TRUE(std::dynamic_pointer_cast<ActLSQplusQuanter>(make_quanter("lsq_plus", QuanterOptions{})));
  QuanterOptions r;
  r.window_size = 7;
  r.moving_rate = 0.5;
  r.paddle_parity_init = true;
  EXPECT_EQ(std::dynamic_pointer_cast<RangeAbsMaxQuanter>(make_quanter("range_abs_max", r))->window_size(), 7);
  auto ma = std::dynamic_pointer_cast<MovingAverageAbsMaxQuanter>(make_quanter("moving_average_abs_max", r));
  EXPECT_EQ(ma->moving_rate(), 0.5);
  EXPECT_EQ(buf(*ma, "state"), 1.0);
  QuanterOptions p;
  p.preprocess = preprocess_from_name("PACT");
  p.pact.alpha = 6.0;
  auto pact = std::dynamic_pointer_cast<PactQuanter>(make_quanter("moving_average_abs_max", p));
  ASSERT_TRUE(pact);
  EXPECT_EQ(pact->inner().type_name(), "moving_average_abs_max");
  EXPECT_EQ(pact->alpha().item(), 6.0);
  EXPECT_EQ(preprocess_from_name(""), Preprocess::None);
  EXPECT_EQ(preprocess_from_name("pact"), Preprocess::Pact);
  EXPECT_NE(error_of([] { preprocess_from_name("clip"); }).find("allowed: none, PACT"), std::string::npos);
}

TEST(QuanterFactory, ErrorsNameTheValueAndTheAllowedChoices) {
  const std::string allowed = "allowed: abs_max, channel_wise_abs_max, range_abs_max, moving_average_abs_max, lsq_plus";
  std::string e = error_of([] { make_quanter("hist"); });
  EXPECT_NE(e.find("unknown quanter type 'hist'"), std::string::npos) << e;
  EXPECT_NE(e.find(allowed), std::string::npos) << e;
  for (int bits : {1, 17}) {
    QuanterOptions o;
    o.bits = bits;
    o.channels = 3;
    for (const std::string& type : quanter_types()) {
      std::string m = error_of([&] { make_quanter(type, o); });
      EXPECT_NE(m.find(type + ": bits must be in 2..16, got " + std::to_string(bits)), std::string::npos) << m;
    }
  }
  QuantOptions bad;
  bad.bits = 0;
  EXPECT_NE(error_of([&] { AbsMaxQuanter q(bad); }).find("bits must be in 2..16, got 0"), std::string::npos);
  EXPECT_NE(error_of([] { make_quanter("channel_wise_abs_max"); }).find("channels must be positive"),
            std::string::npos);
  QuanterOptions act;
  act.lsq_per_channel = true;
  EXPECT_NE(error_of([&] { make_quanter("lsq_plus", act); }).find("per-channel steps are for weights only"),
            std::string::npos);
  QuanterOptions rate;
  rate.moving_rate = 1.0;
  EXPECT_NE(error_of([&] { make_quanter("moving_average_abs_max", rate); }).find("moving_rate must be in [0, 1)"),
            std::string::npos);
}

TEST(QuanterFactory, LowBitQuantersUseTheirGrid) {
  for (int bits : {2, 4, 8, 16}) {
    QuanterOptions o;
    o.bits = bits;
    QuanterPtr q = make_quanter("abs_max", o);
    q->forward(vec({1, -0.25}));
    expect_rel(q->quant_params().scales()[0], 1.0 / static_cast<double>((int64_t{1} << (bits - 1)) - 1));
  }
}

TEST(QuanterOptions, AccessorsAndPrinting) {
  ChannelWiseAbsMaxOptions o;
  o.role = QuantRole::Weight;
  o.bits = 4;
  o.rounding = Rounding::HalfAway;
  o.ste = SteMode::Identity;
  o.axis = 1;
  o.channels = 5;
  ChannelWiseAbsMaxQuanter q(o);
  EXPECT_EQ(q.bits(), 4);
  EXPECT_EQ(q.rounding(), Rounding::HalfAway);
  EXPECT_EQ(q.ste(), SteMode::Identity);
  EXPECT_EQ(q.options().bits, 4);
  EXPECT_EQ(q.axis(), 1);
  EXPECT_EQ(q.channels(), 5);
  EXPECT_EQ(q.to_string(),
            "channel_wise_abs_max(weight, bits=4, grid=narrow, rounding=half_away, ste=identity, axis=1, channels=5)");
  EXPECT_EQ(MovingAverageAbsMaxQuanter().extra_repr(),
            "activation, bits=8, grid=signed, rounding=half_even, ste=clipped, moving_rate=0.900000");
  EXPECT_EQ(std::string(quant_role_name(QuantRole::Activation)), "activation");
  EXPECT_EQ(std::string(lsq_init_name(LsqInit::Lsq)), "lsq");
  EXPECT_EQ(std::string(preprocess_name(Preprocess::Pact)), "PACT");
  auto pact = std::make_shared<PactQuanter>(std::make_shared<AbsMaxQuanter>(), PactOptions{6.0, false, 0.1});
  EXPECT_EQ(pact->extra_repr(), "alpha=6, one_sided, l2=0.1");
  EXPECT_FALSE(pact->two_sided());
  pact->replace_submodule("quanter", std::make_shared<nn::ReLU>());
  EXPECT_NE(error_of([&] { pact->forward(vec({1})); }).find("child 'quanter' is a ReLU, not a quanter"),
            std::string::npos);
  // The identity STE option reaches the op: out-of-grid elements keep their gradient.
  Tensor w = tensor({1, 2, 3, 4, 5, -60, 7, 8, 9, 10}, {2, 5}).set_requires_grad(true);
  ChannelWiseAbsMaxQuanter qi(o);
  qi.forward(w).backward(ones({2, 5}));
  EXPECT_TRUE(AllClose(w.grad(), ones({2, 5}), 0, 0));
}

TEST(QuantParams, BuildersAndChecks) {
  QuantParams p =
      per_channel_params({0.5, 0.0, 2.0}, 1, QuantGrid(8, GridKind::Unsigned), Rounding::HalfEven, {0, 3, 1});
  EXPECT_TRUE(p.per_channel());
  EXPECT_EQ(p.channels(), 3);
  EXPECT_EQ(p.scale.dtype(), DType::F32);
  EXPECT_EQ(p.zero_point.dtype(), DType::I32);
  EXPECT_EQ(p.scales(), (std::vector<double>{0.5, static_cast<float>(kScaleFloor), 2.0}));  // 0 is floored
  EXPECT_EQ(p.zero_points(), (std::vector<int64_t>{0, 3, 1}));
  EXPECT_FALSE(p.symmetric());
  QuantParams t = per_tensor_params(0.25, 0, QuantGrid());
  EXPECT_FALSE(t.per_channel());
  EXPECT_TRUE(t.symmetric());
  EXPECT_NE(error_of([] {
              per_channel_params({1, 2}, -1, QuantGrid());
            }).find("take one scale, got 2"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              per_channel_params({1, 2}, 0, QuantGrid(), Rounding::HalfEven, {1});
            }).find("1 zero points for 2 scales"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              check_quant_args(vec({1}), tensor({0}, {1}, DType::I64), -1, {3}, "convert");
            }).find("convert: zero_point must be i32, got i64"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              check_quant_args(vec({1, 2}), Tensor(), -1, {3}, "convert");
            }).find("convert: per-tensor quantization takes one scale, but scale has shape [2]"),
            std::string::npos);
  EXPECT_TRUE(QuantGrid(8, GridKind::Unsigned).is_unsigned());
  EXPECT_EQ(symmetric_qmax(8), 127);
  EXPECT_EQ(symmetric_qmax(2), 1);
}

TEST(WeightLsq, StepPushedThroughZeroIsProjectedBackToTheFloor) {
  WeightLSQplusQuanter q;
  Tensor w = tensor({0.5, -0.25, 0.125, -1.0}, {4});
  q.train();
  q(w);  // initialises the step
  q.step().fill_(-0.01);  // as an optimizer step overshooting zero would
  Tensor y = q(w);
  EXPECT_DOUBLE_EQ(q.step().item(), static_cast<float>(kScaleFloor));
  for (float v : y.to_vector<float>()) EXPECT_TRUE(std::isfinite(v));
}
