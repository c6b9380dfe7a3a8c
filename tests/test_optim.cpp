#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <vector>

#include "autograd/ops.h"
#include "core/factory.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "tests/support/test_support.h"

namespace qslim {
using qslim::testing::expect_error;

namespace {

using optim::GroupOptions;
using optim::ParamGroup;
using testing::AllClose;

Tensor param(const std::vector<float>& v, DType dt = DType::F32) {
  Tensor p = from_vector<float>(v, {static_cast<int64_t>(v.size())}).to(dt);
  p.set_requires_grad(true);
  return p;
}

void set_grad(Tensor p, const std::vector<double>& g) {
  p.set_grad(from_vector<double>(g, p.shape()).to(p.dtype()));
}

// Gradient at step s for element i: varied signs and magnitudes.
std::vector<double> grad_at(int s, size_t n) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = std::sin(1.3 * (s + 1) + 0.7 * i) * (1.0 + 0.5 * i);
  return g;
}

Tensor vec(const std::vector<double>& v) { return from_vector<double>(v, {static_cast<int64_t>(v.size())}); }

// ---- reference implementations in double, written from PyTorch's documented algorithms ----

struct SgdRef {
  double lr, momentum = 0, dampening = 0, wd = 0;
  bool nesterov = false;
  std::vector<double> buf;
  void step(std::vector<double>& p, const std::vector<double>& grad) {
    const bool first = buf.empty();
    buf.resize(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      double d = grad[i] + wd * p[i];
      if (momentum != 0) {
        buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
};

struct AdamRef {
  double lr, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0;
  bool decoupled = false, amsgrad = false;
  int t = 0;
  std::vector<double> m, v, vmax;
  void step(std::vector<double>& p, const std::vector<double>& grad) {
    if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0), vmax.assign(p.size(), 0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (decoupled)
        p[i] *= 1 - lr * wd;
      else
        g += wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double vv = amsgrad ? vmax[i] : v[i];
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = vv / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

// ---- SGD ----

TEST(SGD, PlainStepIsLrTimesGrad) {
  Tensor p = param({1.0f, -2.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.1});
  set_grad(p, {0.5, -1.0});
  const uint64_t v0 = p.version();
  opt.step();
  EXPECT_GT(p.version(), v0);
  EXPECT_TRUE(AllClose(p, tensor({0.95, -1.9}, {2})));
}

TEST(SGD, MomentumFirstStepTakesGradThenDampens) {
  // PyTorch: buf = grad on the first step (no dampening), then buf = m*buf + (1-d)*grad.
  Tensor p = param({1.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  set_grad(p, {1.0});
  opt.step();
  EXPECT_NEAR(p.item(), 0.9, 1e-7);
  opt.step();  // buf = 0.9 + 0.5 = 1.4
  EXPECT_NEAR(p.item(), 0.9 - 0.14, 1e-7);
}

struct SgdCase {
  double momentum, dampening, wd;
  bool nesterov;
};

void PrintTo(const SgdCase& c, std::ostream* os) {
  *os << "momentum " << c.momentum << " dampening " << c.dampening << " wd " << c.wd << (c.nesterov ? " nesterov" : "");
}

class SGDVariants : public ::testing::TestWithParam<SgdCase> {};

TEST_P(SGDVariants, MatchesReferenceOverThreeSteps) {
  const SgdCase c = GetParam();
  std::vector<double> ref = {0.5, -1.5, 2.0, 0.25};
  Tensor p = param({0.5f, -1.5f, 2.0f, 0.25f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.05, .weight_decay = c.wd, .momentum = c.momentum,
                                   .dampening = c.dampening, .nesterov = c.nesterov});
  SgdRef r{0.05, c.momentum, c.dampening, c.wd, c.nesterov, {}};
  for (int s = 0; s < 3; ++s) {
    auto g = grad_at(s, 4);
    set_grad(p, g);
    opt.step();
    r.step(ref, g);
    EXPECT_TRUE(AllClose(p, vec(ref), 1e-6, 1e-7)) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(All, SGDVariants,
                         ::testing::Values(SgdCase{0, 0, 0, false}, SgdCase{0.9, 0, 0, false},
                                           SgdCase{0.9, 0.3, 0, false}, SgdCase{0.9, 0, 0, true},
                                           SgdCase{0, 0, 0.1, false}, SgdCase{0.8, 0, 0.05, true}));

TEST(SGD, WorksOnF64Parameters) {
  Tensor p = param({1.0f, 2.0f}, DType::F64);
  optim::SGD opt({p}, GroupOptions{.lr = 0.1, .momentum = 0.5, .nesterov = true});
  SgdRef r{0.1, 0.5, 0, 0, true, {}};
  std::vector<double> ref = {1.0, 2.0};
  for (int s = 0; s < 3; ++s) {
    auto g = grad_at(s, 2);
    set_grad(p, g);
    opt.step();
    r.step(ref, g);
  }
  EXPECT_TRUE(AllClose(p, vec(ref), 1e-14, 1e-15));
}

TEST(SGD, GroupsUseTheirOwnLearningRate) {
  Tensor a = param({1.0f}), b = param({1.0f});
  optim::SGD opt({ParamGroup{{a}, {.lr = 0.1}}, ParamGroup{{b}, {.lr = 0.01, .momentum = 0.9}}});
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  opt.step();
  opt.step();
  EXPECT_NEAR(a.item(), 0.8, 1e-7);
  EXPECT_NEAR(b.item(), 1.0 - 0.01 - 0.019, 1e-7);  // buf 1, then 1.9
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.01);
  opt.set_lr(0.5);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.5);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.5);
  EXPECT_DOUBLE_EQ(opt.initial_lr(1), 0.01);
  EXPECT_EQ(opt.group(1).params.size(), 1u);
  EXPECT_TRUE(opt.group(1).params[0].is_same(b));
  opt.options(0).weight_decay = 0.25;
  EXPECT_DOUBLE_EQ(opt.group(0).options.weight_decay, 0.25);
  EXPECT_THROW(opt.group(2), Error);
  EXPECT_THROW(opt.set_lr(0, -0.1), Error);
}

TEST(SGD, SkipsParametersWithoutGradient) {
  Tensor a = param({1.0f}), b = param({2.0f});
  optim::SGD opt({a, b}, GroupOptions{.lr = 0.1, .momentum = 0.9});
  set_grad(a, {1.0});
  opt.step();
  EXPECT_FLOAT_EQ(b.item<float>(), 2.0f);
  auto st = opt.state();
  int state_entries = 0;
  for (auto& [k, t] : st)
    if (k.rfind("state.", 0) == 0) ++state_entries;
  EXPECT_EQ(state_entries, 2);  // step + momentum_buffer of a only
}

TEST(Optimizer, ZeroGradDropsOrZeroes) {
  Tensor a = param({1.0f, 2.0f});
  optim::SGD opt({a}, GroupOptions{.lr = 0.1});
  set_grad(a, {3.0, 4.0});
  opt.zero_grad(false);
  ASSERT_TRUE(a.grad().defined());
  EXPECT_TRUE(AllClose(a.grad(), zeros({2})));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Optimizer, RejectsInvalidParametersAndOptions) {
  Tensor leaf = param({1.0f});
  Tensor no_grad = ones({2});
  EXPECT_THROW(optim::SGD({no_grad}, GroupOptions{.lr = 0.1}), Error);
  Tensor int_t = zeros({2}, DType::I64);
  EXPECT_THROW(optim::SGD({int_t}, GroupOptions{.lr = 0.1}), Error);
  EXPECT_THROW(optim::SGD({leaf, leaf}, GroupOptions{.lr = 0.1}), Error);
  EXPECT_THROW(optim::SGD({leaf}, GroupOptions{.lr = 0.1, .nesterov = true}), Error);
  EXPECT_THROW(optim::SGD({leaf}, GroupOptions{.lr = -1.0}), Error);
  EXPECT_THROW(optim::Adam({leaf}, GroupOptions{.beta1 = 1.0}), Error);
  EXPECT_THROW(optim::SGD(std::vector<ParamGroup>{}), Error);
  try {
    optim::SGD({leaf, leaf}, GroupOptions{.lr = 0.1});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than one"), std::string::npos) << e.what();
  }
}

TEST(Optimizer, GradientOfWrongDtypeIsAnError) {
  Tensor p = param({1.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.1});
  p.set_grad(ones({1}, DType::F64));
  EXPECT_THROW(opt.step(), Error);
}

// ---- Adam / AdamW ----

TEST(Adam, FirstStepMovesByLrTimesSign) {
  Tensor p = param({1.0f, 1.0f});
  optim::Adam opt({p}, GroupOptions{.lr = 0.1});
  set_grad(p, {2.0, -0.5});
  opt.step();
  EXPECT_TRUE(AllClose(p, tensor({0.9, 1.1}, {2}), 1e-6, 1e-6));
}

struct AdamCase {
  bool decoupled, amsgrad;
  double wd;
};

void PrintTo(const AdamCase& c, std::ostream* os) {
  *os << (c.decoupled ? "AdamW" : "Adam") << (c.amsgrad ? " amsgrad" : "") << " wd " << c.wd;
}

class AdamVariants : public ::testing::TestWithParam<AdamCase> {};

TEST_P(AdamVariants, MatchesReferenceOverThreeSteps) {
  const AdamCase c = GetParam();
  std::vector<double> ref = {0.5, -1.5, 2.0};
  Tensor p = param({0.5f, -1.5f, 2.0f});
  GroupOptions o{.lr = 0.01, .weight_decay = c.wd, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .amsgrad = c.amsgrad};
  std::unique_ptr<optim::Optimizer> opt;
  if (c.decoupled)
    opt = std::make_unique<optim::AdamW>(std::vector<Tensor>{p}, o);
  else
    opt = std::make_unique<optim::Adam>(std::vector<Tensor>{p}, o);
  EXPECT_EQ(opt->name(), c.decoupled ? "AdamW" : "Adam");
  AdamRef r{0.01, 0.8, 0.95, 1e-6, c.wd, c.decoupled, c.amsgrad, 0, {}, {}, {}};
  for (int s = 0; s < 3; ++s) {
    auto g = grad_at(s, 3);
    if (s == 2) g[1] *= 0.01;  // a small gradient after large ones makes amsgrad's max matter
    set_grad(p, g);
    opt->step();
    r.step(ref, g);
    EXPECT_TRUE(AllClose(p, vec(ref), 2e-6, 1e-6)) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(All, AdamVariants,
                         ::testing::Values(AdamCase{false, false, 0}, AdamCase{false, false, 0.1},
                                           AdamCase{false, true, 0}, AdamCase{true, false, 0.1},
                                           AdamCase{true, true, 0.05}));

TEST(Adam, AmsgradDiffersFromAdamWhenSecondMomentShrinks) {
  Tensor a = param({1.0f}), b = param({1.0f});
  optim::Adam plain({a}, GroupOptions{.lr = 0.1, .beta2 = 0.5}),
      ams({b}, GroupOptions{.lr = 0.1, .beta2 = 0.5, .amsgrad = true});
  for (double g : {10.0, 0.01, 0.01}) {
    set_grad(a, {g});
    set_grad(b, {g});
    plain.step();
    ams.step();
  }
  EXPECT_GT(std::abs(a.item() - b.item()), 1e-2);
}

// ---- state export / import ----

template <typename Opt>
void check_resume(const GroupOptions& o) {
  auto make = [] { return std::vector<Tensor>{param({0.5f, -1.0f, 2.0f}), param({3.0f, -0.25f})}; };
  std::vector<Tensor> pa = make();
  Opt a({ParamGroup{{pa[0]}, o}, ParamGroup{{pa[1]}, o}});
  optim::StepLR sched_a(a, 2, 0.5);
  auto run = [](optim::Optimizer& opt, optim::LRScheduler& sched, std::vector<Tensor>& ps, int from, int to) {
    for (int s = from; s < to; ++s) {
      for (auto& p : ps) set_grad(p, grad_at(s, p.numel()));
      opt.step();
      sched.step();
    }
  };
  run(a, sched_a, pa, 0, 3);
  const auto snap = a.state();
  const auto sched_snap = sched_a.state();
  std::vector<Tensor> pb = make();
  for (size_t i = 0; i < pb.size(); ++i) pb[i].detach().copy_(pa[i]);
  run(a, sched_a, pa, 3, 6);

  Opt b({ParamGroup{{pb[0]}, {.lr = 123.0}}, ParamGroup{{pb[1]}, {.lr = 7.0}}});
  b.load_state(snap);
  optim::StepLR sched_b(b, 2, 0.5);
  sched_b.load_state(sched_snap);
  EXPECT_EQ(sched_b.last_step(), 3);
  EXPECT_DOUBLE_EQ(b.lr(0), o.lr * 0.5);
  run(b, sched_b, pb, 3, 6);
  for (size_t i = 0; i < pa.size(); ++i) {
    auto va = pa[i].to_vector<float>(), vb = pb[i].to_vector<float>();
    for (size_t j = 0; j < va.size(); ++j) EXPECT_EQ(va[j], vb[j]) << "param " << i << " element " << j;
  }
}

TEST(OptimizerState, SgdMomentumResumesBitForBit) {
  check_resume<optim::SGD>({.lr = 0.05, .weight_decay = 0.01, .momentum = 0.9, .nesterov = true});
}

TEST(OptimizerState, AdamResumesBitForBit) { check_resume<optim::Adam>({.lr = 0.01, .amsgrad = true}); }

TEST(OptimizerState, AdamWResumesBitForBit) { check_resume<optim::AdamW>({.lr = 0.01, .weight_decay = 0.1}); }

TEST(OptimizerState, SnapshotIsACopy) {
  Tensor p = param({1.0f});
  optim::Adam opt({p}, GroupOptions{.lr = 0.1});
  set_grad(p, {1.0});
  opt.step();
  auto snap = opt.state();
  opt.step();
  for (auto& [k, t] : snap)
    if (k == "state.0.step") {
      EXPECT_EQ(t.item(), 1.0);
    }
}

TEST(OptimizerState, LoadRejectsMismatches) {
  Tensor p = param({1.0f, 2.0f});
  optim::Adam opt({p}, GroupOptions{.lr = 0.1});
  set_grad(p, {1.0, 1.0});
  opt.step();
  const auto good = opt.state();

  auto expect_error = [&](optim::NamedTensors st, const std::string& needle) {
    Tensor q = param({0.0f, 0.0f});
    optim::Adam other({q}, GroupOptions{.lr = 0.5});
    try {
      other.load_state(st);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_DOUBLE_EQ(other.lr(), 0.5);  // a failed load changes nothing
  };
  auto without = [&](const std::string& key) {
    optim::NamedTensors st;
    for (auto& kv : good)
      if (kv.first != key) st.push_back(kv);
    return st;
  };
  expect_error(without("state.0.exp_avg_sq"), {"state.0.exp_avg_sq"});
  expect_error(without("param_groups.0.lr"), {"param_groups.0.lr"});
  auto extra = good;
  extra.emplace_back("state.0.bogus", zeros({2}));
  expect_error(extra, {"state.0.bogus"});
  auto bad_shape = good;
  for (auto& kv : bad_shape)
    if (kv.first == "state.0.exp_avg") kv.second = zeros({3});
  expect_error(bad_shape, {"[3]"});

  Tensor a = param({1.0f}), b = param({1.0f});
  optim::Adam two({ParamGroup{{a}, {}}, ParamGroup{{b}, {}}});
  EXPECT_THROW(two.load_state(good), Error);
}

// ---- schedulers ----

TEST(LRScheduler, StepLR) {
  Tensor p = param({1.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.1});
  optim::StepLR s(opt, 3, 0.5);
  std::vector<double> seen;
  for (int i = 0; i < 7; ++i, s.step()) seen.push_back(opt.lr());
  const std::vector<double> want = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(seen[i], want[i], 1e-15) << "step " << i;
}

TEST(LRScheduler, MultiStepLRAppliesToEveryGroup) {
  Tensor a = param({1.0f}), b = param({1.0f});
  optim::SGD opt({ParamGroup{{a}, {.lr = 1.0}}, ParamGroup{{b}, {.lr = 0.2}}});
  optim::MultiStepLR s(opt, {2, 5}, 0.1);
  s.set_step(1);
  EXPECT_NEAR(opt.lr(0), 1.0, 1e-15);
  s.step();  // 2
  EXPECT_NEAR(opt.lr(0), 0.1, 1e-15);
  EXPECT_NEAR(opt.lr(1), 0.02, 1e-15);
  s.set_step(5);
  EXPECT_NEAR(opt.lr(0), 0.01, 1e-15);
  s.set_step(100);
  EXPECT_NEAR(s.last_lr()[1], 0.002, 1e-15);
  EXPECT_THROW(optim::MultiStepLR(opt, {5, 5}), Error);
}

TEST(LRScheduler, CosineWithoutWarmupIsPytorchClosedForm) {
  Tensor p = param({1.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 0.1});
  optim::CosineAnnealingLR s(opt, 10, 0, 0.001);
  EXPECT_NEAR(opt.lr(), 0.1, 1e-15);
  s.set_step(5);
  EXPECT_NEAR(opt.lr(), 0.001 + 0.099 * 0.5, 1e-12);
  s.set_step(3);
  EXPECT_NEAR(opt.lr(), 0.001 + 0.099 * 0.5 * (1 + std::cos(M_PI * 0.3)), 1e-12);
  s.set_step(10);
  EXPECT_NEAR(opt.lr(), 0.001, 1e-15);
}

TEST(LRScheduler, CosineWithWarmupPerIteration) {
  // 5 epochs of 4 iterations, one warm-up epoch, stepped per iteration.
  Tensor p = param({1.0f});
  optim::AdamW opt({p}, GroupOptions{.lr = 0.4});
  optim::CosineAnnealingLR s(opt, 20, 4, 0.0, 0.1);
  std::vector<double> lr;
  for (int i = 0; i <= 22; ++i, s.step()) lr.push_back(opt.lr());
  EXPECT_NEAR(lr[0], 0.04, 1e-12);                      // start of the ramp
  EXPECT_NEAR(lr[2], 0.4 * (0.1 + 0.9 * 0.5), 1e-12);   // middle of the ramp
  for (int i = 1; i < 4; ++i) EXPECT_NEAR(lr[i] - lr[i - 1], 0.4 * 0.9 / 4, 1e-12);  // linear
  EXPECT_NEAR(lr[4], 0.4, 1e-12);  // peak
  for (int i = 5; i <= 20; ++i) EXPECT_LT(lr[i], lr[i - 1]);
  EXPECT_NEAR(lr[12], 0.2, 1e-12);  // half way through the cosine
  EXPECT_NEAR(lr[20], 0.0, 1e-15);  // end
  EXPECT_NEAR(lr[22], 0.0, 1e-15);
  EXPECT_THROW(optim::CosineAnnealingLR(opt, 4, 4), Error);
}

TEST(LRScheduler, StateRoundTrip) {
  Tensor p = param({1.0f});
  optim::SGD opt({p}, GroupOptions{.lr = 1.0});
  optim::StepLR s(opt, 1, 0.5);
  s.step();
  s.step();
  auto st = s.state();
  optim::StepLR t(opt, 1, 0.5);
  EXPECT_DOUBLE_EQ(opt.lr(), 1.0);
  t.load_state(st);
  EXPECT_EQ(t.last_step(), 2);
  EXPECT_DOUBLE_EQ(opt.lr(), 0.25);
  EXPECT_THROW(t.load_state({}), Error);
}

// ---- gradient clipping ----

TEST(ClipGrad, ScalesToMaxNormAndReturnsTotal) {
  Tensor a = param({0.0f, 0.0f}), b = param({0.0f}), c = param({0.0f});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {-12.0});
  EXPECT_NEAR(optim::clip_grad_norm_({a, b, c}, 100.0), 13.0, 1e-9);
  EXPECT_TRUE(AllClose(a.grad(), tensor({3, 4}, {2})));  // below max: untouched
  const double total = optim::clip_grad_norm_({a, b, c}, 6.5);
  EXPECT_NEAR(total, 13.0, 1e-9);
  const double k = 6.5 / (13.0 + 1e-6);
  EXPECT_TRUE(AllClose(a.grad(), tensor({3 * k, 4 * k}, {2})));
  EXPECT_TRUE(AllClose(b.grad(), tensor({-12 * k}, {1})));
  EXPECT_FALSE(c.grad().defined());
}

TEST(ClipGrad, OtherNorms) {
  Tensor a = param({0.0f, 0.0f}), b = param({0.0f});
  set_grad(a, {3.0, -4.0});
  set_grad(b, {-12.0});
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1e9, INFINITY), 12.0, 1e-12);
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1e9, 1.0), 19.0, 1e-9);
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1e9, 3.0), std::cbrt(27.0 + 64 + 1728), 1e-9);
  set_grad(b, {NAN});
  EXPECT_THROW(optim::clip_grad_norm_({a, b}, 1.0, 2.0, true), Error);
  EXPECT_THROW(optim::clip_grad_norm_({a, b}, 1.0, INFINITY, true), Error);
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm_({b, a}, 1.0, INFINITY)));
  EXPECT_THROW(optim::clip_grad_norm_({a, b}, 1.0, 0.5), Error);
}

TEST(ClipGrad, LargeGradientUsesSameTotal) {
  const int64_t n = 300000;  // large enough to be split across threads
  Tensor p = zeros({n});
  p.set_requires_grad(true);
  Tensor g = full({n}, 0.5);
  p.set_grad(g);
  EXPECT_NEAR(optim::clip_grad_norm_({p}, 1.0), 0.5 * std::sqrt(double(n)), 1e-6);
  EXPECT_NEAR(p.grad().to_vector<float>()[n - 1], 0.5 / (0.5 * std::sqrt(double(n)) + 1e-6), 1e-7);
}

// ---- convergence with autograd ----

TEST(Optim, FitsLineWithAutograd) {
  Generator gen(7);
  Tensor x = uniform({64, 1}, -1.0, 1.0, DType::F32, &gen);
  Tensor y = add(mul(x, 3.0), 2.0);
  Tensor w = zeros({1}), b = zeros({1});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  for (bool use_adam : {false, true}) {
    w.detach().zero_();
    b.detach().zero_();
    std::unique_ptr<optim::Optimizer> opt;
    if (use_adam)
      opt = std::make_unique<optim::Adam>(std::vector<Tensor>{w, b}, GroupOptions{.lr = 0.1});
    else
      opt = std::make_unique<optim::SGD>(std::vector<Tensor>{w, b}, GroupOptions{.lr = 0.1, .momentum = 0.9});
    double loss_value = 0;
    for (int it = 0; it < 300; ++it) {
      opt->zero_grad();
      Tensor diff = sub(add(mul(x, w), b), y);
      Tensor loss = mean(mul(diff, diff));
      loss.backward();
      opt->step();
      loss_value = loss.item();
    }
    EXPECT_LT(loss_value, 1e-6) << opt->name();
    EXPECT_NEAR(w.item(), 3.0, 1e-3) << opt->name();
    EXPECT_NEAR(b.item(), 2.0, 1e-3) << opt->name();
  }
}

}  // namespace
}  // namespace qslim
