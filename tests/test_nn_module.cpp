#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/flatten.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/residual.h"
#include "nn/sequential.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::nn;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

// A residual-style block whose children have names, as in torchvision (conv, bn).
class Block : public Module {
 public:
  Block(int64_t c) {
    register_module("conv", std::make_shared<Conv2D>(c, c, 3, 1, 1, 1, 1, false));
    register_module("bn", std::make_shared<BatchNorm2D>(c));
  }
  using Module::forward;
  Tensor forward(const Tensor& x) override { return child("bn")(child("conv")(x)) + x; }
  std::string type_name() const override { return "Block"; }
};

class Net : public Module {
 public:
  Net() {
    register_module("features", std::make_shared<Sequential>(std::initializer_list<ModulePtr>{
                                    std::make_shared<Conv2D>(1, 2, 3, 1, 1), std::make_shared<ReLU>(),
                                    std::make_shared<BatchNorm2D>(2), std::make_shared<Block>(2)}));
    register_module("pool", std::make_shared<AdaptiveAvgPool2D>(1));
    register_module("flatten", std::make_shared<Flatten>());
    register_module("fc", std::make_shared<Linear>(2, 3));
  }
  using Module::forward;
  Tensor forward(const Tensor& x) override {
    return child("fc")(child("flatten")(child("pool")(child("features")(x))));
  }
  std::string type_name() const override { return "Net"; }
};

std::vector<std::string> names_of(const NamedTensors& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Naive direct convolution (groups, stride, padding, dilation) in double.
Tensor ref_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  const int64_t sh = p.stride[0], sw = p.stride[1], ph = p.padding[0], pw = p.padding[1], dh = p.dilation[0],
                dw = p.dilation[1], groups = p.groups;
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3), Og = O / groups;
  const int64_t OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1, OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
  std::vector<double> out(N * O * OH * OW, 0.0);
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(O, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = bv[o];
          const int64_t g = o / Og;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * sh - ph + kh * dh, iw = ow * sw - pw + kw * dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += xv[((n * C + g * Cg + ci) * H + ih) * W + iw] * wv[((o * Cg + ci) * KH + kh) * KW + kw];
              }
          out[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
  return from_vector<double>(out, {N, O, OH, OW});
}

}  // namespace

TEST(Module, DottedNamesOnNestedSequential) {
  Sequential net{std::make_shared<Sequential>(std::initializer_list<ModulePtr>{std::make_shared<Conv2D>(1, 2, 3),
                                                                               std::make_shared<BatchNorm2D>(2),
                                                                               std::make_shared<ReLU>()}),
                 std::make_shared<Flatten>(), std::make_shared<Linear>(8, 3)};
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(names_of(net.named_buffers()),
            (std::vector<std::string>{"0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked"}));
  EXPECT_EQ(names_of(net.state_dict()),
            (std::vector<std::string>{"0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "0.1.running_mean",
                                      "0.1.running_var", "0.1.num_batches_tracked", "2.weight", "2.bias"}));
  EXPECT_EQ(names_of(net.named_parameters(false)).size(), 0u);
  EXPECT_EQ(net.num_parameters(), 2 * 9 + 2 + 2 + 2 + 3 * 8 + 3);
  std::vector<std::string> mods;
  for (auto& [n, m] : net.named_modules()) mods.push_back(n + ":" + m->type_name());
  EXPECT_EQ(mods, (std::vector<std::string>{":Sequential", "0:Sequential", "0.0:Conv2D", "0.1:BatchNorm2D",
                                            "0.2:ReLU", "1:Flatten", "2:Linear"}));
  Tensor y = net(randn({2, 1, 4, 4}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
}

TEST(Module, NamedModulesWithPrefixAndSharedChildren) {
  auto shared = std::make_shared<Linear>(2, 2);
  Sequential net{shared, shared};
  auto mods = net.named_modules("model");
  ASSERT_EQ(mods.size(), 2u);  // the shared child appears once
  EXPECT_EQ(mods[0].first, "model");
  EXPECT_EQ(mods[1].first, "model.0");
  EXPECT_EQ(net.named_parameters().size(), 2u);  // and so do its parameters
  EXPECT_EQ(net.state_dict().size(), 4u);
}

TEST(Module, GetAndReplaceSubmodule) {
  manual_seed(3);
  auto net = std::make_shared<Net>();
  EXPECT_EQ(net->get_submodule("features.3.conv")->type_name(), "Conv2D");
  EXPECT_EQ(net->get_submodule("")->type_name(), "Net");
  EXPECT_EQ(net->get_submodule("").get(), net.get());
  std::string err = error_of([&] { net->get_submodule("features.3.nope"); });
  EXPECT_TRUE(contains(err, "features.3.nope") && contains(err, "'nope'") && contains(err, "conv, bn")) << err;
  err = error_of([&] { net->get_submodule("head.fc"); });
  EXPECT_TRUE(contains(err, "'head'") && contains(err, "features")) << err;

  Tensor x = randn({2, 1, 5, 5});
  net->eval();
  Tensor before = (*net)(x);
  auto conv = std::dynamic_pointer_cast<Conv2D>(net->get_submodule("features.3.conv"));
  auto replacement = std::make_shared<Conv2D>(2, 2, 3, 1, 1, 1, 1, false);
  replacement->weight().detach().copy_(conv->weight());
  net->replace_submodule("features.3.conv", replacement);
  EXPECT_EQ(net->get_submodule("features.3.conv").get(), replacement.get());
  EXPECT_TRUE(AllClose((*net)(x), before));  // same weights, same output: forward goes through the new child
  replacement->weight().detach().fill_(0.0);
  EXPECT_FALSE(AllClose((*net)(x), before));
  // named_parameters reflect the replacement.
  bool found = false;
  for (auto& [n, t] : net->named_parameters())
    if (n == "features.3.conv.weight") found = t.is_same(replacement->weight());
  EXPECT_TRUE(found);
  // Replacing an element of a Sequential keeps its position and name.
  net->replace_submodule("features.1", std::make_shared<ReLU6>());
  auto& feats = dynamic_cast<Sequential&>(net->child("features"));
  EXPECT_EQ(feats[1]->type_name(), "ReLU6");
  EXPECT_EQ(feats.named_children()[1].first, "1");
  err = error_of([&] { net->replace_submodule("features.9", std::make_shared<ReLU>()); });
  EXPECT_TRUE(contains(err, "'9'")) << err;
  EXPECT_THROW(net->replace_submodule("", std::make_shared<ReLU>()), Error);
}

TEST(Module, TrainEvalPropagates) {
  Net net;
  for (auto& [n, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << n;
  net.eval();
  for (auto& [n, m] : net.named_modules()) EXPECT_FALSE(m->is_training()) << n;
  net.train();
  for (auto& [n, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << n;
}

TEST(Module, StateDictRoundTrip) {
  manual_seed(1);
  Net a;
  manual_seed(2);
  Net b;
  Tensor x = randn({3, 1, 5, 5});
  a.train();
  a(x);  // moves a's running statistics away from their initial values
  a.eval();
  b.eval();
  EXPECT_FALSE(AllClose(a(x), b(x)));
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(AllClose(a(x), b(x), 0, 0));
  auto sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_EQ(sa[i].second.dtype(), sb[i].second.dtype());
    EXPECT_TRUE(AllClose(sa[i].second, sb[i].second, 0, 0)) << sa[i].first;
    EXPECT_FALSE(sa[i].second.is_same(sb[i].second));
  }
  EXPECT_EQ(b.child("features").child("2").buffer("num_batches_tracked").item(), 1.0);
  // Loading copies values: the parameter tensors of b keep their identity.
  Tensor w = b.child("fc").param("weight");
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(w.is_same(b.child("fc").param("weight")));
}

TEST(Module, StrictLoadErrors) {
  Net net;
  auto good = net.state_dict();
  auto with = [&](const std::function<void(NamedTensors&)>& edit) {
    NamedTensors s;
    for (auto& [n, t] : good) s.emplace_back(n, t.clone());
    edit(s);
    return s;
  };
  std::string err = error_of([&] {
    net.load_state_dict(with([](NamedTensors& s) {
      for (auto& [n, t] : s)
        if (n == "fc.weight") t = zeros({3, 5});
    }));
  });
  EXPECT_TRUE(contains(err, "fc.weight") && contains(err, "[3, 5]") && contains(err, "[3, 2]")) << err;
  err = error_of([&] {
    net.load_state_dict(with([](NamedTensors& s) {
      for (auto& [n, t] : s)
        if (n == "fc.bias") t = zeros({3}, DType::F64);
    }));
  });
  EXPECT_TRUE(contains(err, "fc.bias") && contains(err, "f64") && contains(err, "f32")) << err;
  err = error_of([&] {
    net.load_state_dict(with([](NamedTensors& s) { s.erase(s.begin() + 2); }));
  });
  EXPECT_TRUE(contains(err, "missing") && contains(err, good[2].first)) << err;
  err = error_of([&] {
    net.load_state_dict(with([](NamedTensors& s) { s.emplace_back("fc.extra", zeros({1})); }));
  });
  EXPECT_TRUE(contains(err, "unexpected") && contains(err, "fc.extra")) << err;

  // Non-strict tolerates missing/unexpected keys (and converts dtypes) but never a shape mismatch.
  Tensor fc_bias = net.child("fc").param("bias");
  net.load_state_dict(with([](NamedTensors& s) {
                        s.erase(s.begin());
                        s.emplace_back("extra", zeros({1}));
                        for (auto& [n, t] : s)
                          if (n == "fc.bias") t = full({3}, 0.25, DType::F64);
                      }),
                      false);
  EXPECT_EQ(fc_bias.to_vector<float>(), (std::vector<float>{0.25f, 0.25f, 0.25f}));
  EXPECT_THROW(net.load_state_dict(with([](NamedTensors& s) { s.back().second = zeros({7}); }), false), Error);

  // A failing load changes nothing.
  Tensor before = net.child("fc").param("weight").clone();
  EXPECT_THROW(net.load_state_dict(with([](NamedTensors& s) {
    for (auto& [n, t] : s) t = zeros_like(t);
    s.pop_back();
  })),
               Error);
  EXPECT_TRUE(AllClose(net.child("fc").param("weight"), before, 0, 0));
}

TEST(Module, RegistrationAndAccessErrors) {
  Linear l(2, 3);
  EXPECT_THROW(l.register_parameter("weight", zeros({1})), Error);
  EXPECT_THROW(l.register_buffer("a.b", zeros({1})), Error);
  std::string err = error_of([&] { l.param("nope"); });
  EXPECT_TRUE(contains(err, "nope") && contains(err, "weight, bias")) << err;
  EXPECT_THROW(l.child("x"), Error);
  EXPECT_THROW(l.buffer("x"), Error);
  EXPECT_THROW(ReLU().forward(std::vector<Tensor>{zeros({1}), zeros({1})}), Error);
  EXPECT_THROW(Add().forward(zeros({1})), Error);
  Tensor w2 = zeros({3, 2});
  l.set_param("weight", w2);
  EXPECT_TRUE(l.weight().is_same(w2));
  EXPECT_THROW(l.set_param("missing", w2), Error);
}

TEST(Module, ZeroGradClearsGradients) {
  Linear l(3, 2);
  Tensor y = sum(l(randn({4, 3})));
  y.backward();
  EXPECT_TRUE(l.weight().grad().defined());
  l.zero_grad();
  EXPECT_FALSE(l.weight().grad().defined());
  EXPECT_FALSE(l.bias().grad().defined());
}

TEST(Module, ToStringTree) {
  Sequential net{std::make_shared<Conv2D>(1, 6, 5), std::make_shared<ReLU>(),
                 std::make_shared<Sequential>(std::initializer_list<ModulePtr>{std::make_shared<Linear>(4, 2, false)})};
  EXPECT_EQ(net.to_string(),
            "Sequential(\n"
            "  (0): Conv2D(1, 6, kernel_size=(5, 5), stride=(1, 1))\n"
            "  (1): ReLU()\n"
            "  (2): Sequential(\n"
            "    (0): Linear(in_features=4, out_features=2, bias=False)\n"
            "  )\n"
            ")");
}

// ---- init ----

TEST(Init, LinearDefaultBoundsAndStatistics) {
  manual_seed(10);
  Linear l(1000, 500);
  const double bound = 1.0 / std::sqrt(1000.0);
  auto w = l.weight().to_vector<double>();
  double mean = 0, sq = 0, mx = 0;
  for (double v : w) {
    mean += v;
    sq += v * v;
    mx = std::max(mx, std::abs(v));
  }
  mean /= w.size();
  const double var = sq / w.size() - mean * mean;
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);                     // the whole range is used
  EXPECT_NEAR(mean, 0.0, 0.01 * bound);            // 500k samples: sd of mean ~ 0.0008 * bound
  EXPECT_NEAR(var, bound * bound / 3.0, 0.01 * bound * bound / 3.0);
  for (double v : l.bias().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
  EXPECT_TRUE(l.weight().requires_grad());
}

TEST(Init, ConvDefaultBoundsUseGroupedFanIn) {
  manual_seed(11);
  Conv2D c(16, 32, 3, 1, 1, 1, /*groups=*/4);
  EXPECT_EQ(c.weight().shape(), (Shape{32, 4, 3, 3}));
  const double bound = 1.0 / std::sqrt(4.0 * 9.0);
  double mx = 0;
  for (double v : c.weight().to_vector<double>()) mx = std::max(mx, std::abs(v));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.95 * bound);
  for (double v : c.bias().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
}

TEST(Init, ManualSeedMakesModelsReproducible) {
  manual_seed(5);
  Net a;
  manual_seed(5);
  Net b;
  manual_seed(6);
  Net c;
  EXPECT_TRUE(AllClose(a.child("fc").param("weight"), b.child("fc").param("weight"), 0, 0));
  EXPECT_FALSE(AllClose(a.child("fc").param("weight"), c.child("fc").param("weight"), 0, 0));
}

TEST(Init, FunctionsAndFans) {
  auto [fi, fo] = init::calculate_fan_in_and_fan_out(zeros({8, 3, 5, 5}));
  EXPECT_EQ(fi, 75);
  EXPECT_EQ(fo, 200);
  EXPECT_THROW(init::calculate_fan_in_and_fan_out(zeros({4})), Error);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::ReLU), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::Tanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::LeakyReLU, std::sqrt(5.0)), std::sqrt(1.0 / 3.0));

  Generator gen(1);
  Tensor t = zeros({400, 300});
  init::kaiming_normal_(t, 0.0, init::FanMode::FanIn, init::Nonlinearity::ReLU, &gen);
  auto v = t.to_vector<double>();
  double sq = 0;
  for (double x : v) sq += x * x;
  EXPECT_NEAR(std::sqrt(sq / v.size()), std::sqrt(2.0 / 300.0), 0.01 * std::sqrt(2.0 / 300.0));

  init::xavier_uniform_(t, 1.0, &gen);
  const double a = std::sqrt(6.0 / 700.0);
  double mx = 0;
  for (double x : t.to_vector<double>()) mx = std::max(mx, std::abs(x));
  EXPECT_LE(mx, a);
  EXPECT_GT(mx, 0.99 * a);

  init::kaiming_uniform_(t, 0.0, init::FanMode::FanOut, init::Nonlinearity::ReLU, &gen);
  const double b = std::sqrt(6.0 / 400.0);
  mx = 0;
  for (double x : t.to_vector<double>()) mx = std::max(mx, std::abs(x));
  EXPECT_LE(mx, b);
  EXPECT_GT(mx, 0.99 * b);

  Generator g1(4), g2(4);
  Tensor u1 = zeros({10}), u2 = zeros({10});
  init::uniform_(u1, -2, 3, &g1);
  init::uniform_(u2, -2, 3, &g2);
  EXPECT_TRUE(AllClose(u1, u2, 0, 0));
  for (double x : u1.to_vector<double>()) EXPECT_TRUE(x >= -2 && x < 3);
  init::normal_(u1, 5.0, 0.0);
  EXPECT_EQ(u1.to_vector<float>(), std::vector<float>(10, 5.0f));
  init::constant_(u1, 2.5);
  EXPECT_EQ(u1.to_vector<float>(), std::vector<float>(10, 2.5f));
  init::zeros_(u1);
  EXPECT_EQ(u1.to_vector<float>(), std::vector<float>(10, 0.0f));
  init::ones_(u1);
  EXPECT_EQ(u1.to_vector<float>(), std::vector<float>(10, 1.0f));
  EXPECT_THROW(init::uniform_(zeros({3}, DType::I64)), Error);
}

// ---- layers ----

TEST(Layers, LinearForwardMatchesOpAndHandValues) {
  Linear l(3, 2);
  l.weight().detach().copy_(tensor({1, 2, 3, -1, 0, 1}, {2, 3}));
  l.bias().detach().copy_(tensor({0.5, -0.5}, {2}));
  Tensor x = tensor({1, 1, 1, 2, 0, -1}, {2, 3});
  Tensor y = l(x);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f}));
  EXPECT_TRUE(AllClose(y, linear(x, l.weight(), l.bias()), 0, 0));
  Linear nb(3, 2, false);
  EXPECT_FALSE(nb.has_bias());
  EXPECT_EQ(nb.named_parameters().size(), 1u);
  std::string err = error_of([&] { l(zeros({2, 4})); });
  EXPECT_TRUE(contains(err, "[2, 4]") && contains(err, "in_features=3")) << err;
}

TEST(Layers, Conv2DForwardMatchesReference) {
  manual_seed(8);
  Conv2D c(4, 6, {3, 2}, {2, 1}, {1, 0}, {1, 2}, 2);
  EXPECT_EQ(c.kernel_size(), Size2(3, 2));
  EXPECT_EQ(c.stride(), Size2(2, 1));
  EXPECT_EQ(c.padding(), Size2(1, 0));
  EXPECT_EQ(c.dilation(), Size2(1, 2));
  EXPECT_EQ(c.groups(), 2);
  EXPECT_EQ(c.in_channels(), 4);
  EXPECT_EQ(c.out_channels(), 6);
  Tensor x = randn({2, 4, 7, 6});
  Tensor y = c(x);
  EXPECT_TRUE(AllClose(y, conv2d(x, c.weight(), c.bias(), c.conv_params()), 0, 0));
  EXPECT_EQ(y.shape(), (Shape{2, 6, 4, 4}));
  EXPECT_TRUE(AllClose(y, ref_conv(x, c.weight(), c.bias(), c.conv_params()), 1e-4, 1e-5));
  Conv2D sq(4, 6, 3, 2, 1, 2, 2);
  EXPECT_TRUE(AllClose(sq(x), ref_conv(x, sq.weight(), sq.bias(), sq.conv_params()), 1e-4, 1e-5));
  EXPECT_EQ(sq.extra_repr(), "4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2");
  std::string err = error_of([&] { c(zeros({1, 3, 5, 5})); });
  EXPECT_TRUE(contains(err, "[1, 3, 5, 5]")) << err;
  EXPECT_THROW(Conv2D(3, 4, 3, 1, 0, 1, 2), Error);  // groups must divide channels
}

TEST(Layers, BatchNorm2DTrainVsEval) {
  BatchNorm2D bn(3);
  EXPECT_EQ(names_of(bn.state_dict()),
            (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn.buffer("num_batches_tracked").dtype(), DType::I64);
  Generator gen(2);
  Tensor x = randn({4, 3, 5, 5}, DType::F32, &gen) * 3.0 + 2.0;
  Tensor y = bn(x);  // training: batch statistics
  Tensor m = mean(y, {0, 2, 3}), v = var(y, {0, 2, 3}, false);
  EXPECT_TRUE(AllClose(m, zeros({3}), 0, 1e-5));
  EXPECT_TRUE(AllClose(v, ones({3}), 1e-3, 1e-3));
  EXPECT_EQ(bn.buffer("num_batches_tracked").item(), 1.0);
  Tensor bm = mean(x, {0, 2, 3}), bv = var(x, {0, 2, 3}, true);
  EXPECT_TRUE(AllClose(bn.buffer("running_mean"), bm * 0.1, 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(bn.buffer("running_var"), bv * 0.1 + 0.9, 1e-5, 1e-5));

  bn.eval();
  Tensor rm = bn.buffer("running_mean").clone(), rv = bn.buffer("running_var").clone();
  Tensor ye = bn(x);
  Tensor want = (x - rm.reshape({1, 3, 1, 1})) / sqrt(rv.reshape({1, 3, 1, 1}) + 1e-5);
  EXPECT_TRUE(AllClose(ye, want, 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(bn.buffer("running_mean"), rm, 0, 0));
  EXPECT_EQ(bn.buffer("num_batches_tracked").item(), 1.0);
  EXPECT_THROW(bn(zeros({2, 3, 4})), Error);
  std::string err = error_of([&] { bn(zeros({2, 4, 1, 1})); });
  EXPECT_TRUE(contains(err, "4 channels") && contains(err, "expected 3")) << err;

  BatchNorm1D bn1(3, 1e-5, 0.1, /*affine=*/false, /*track_running_stats=*/false);
  EXPECT_TRUE(bn1.state_dict().empty());
  bn1.eval();  // without running statistics, eval still normalises with batch statistics
  Tensor y1 = bn1(x.reshape({4, 3, 25}));
  EXPECT_TRUE(AllClose(mean(y1, {0, 2}), zeros({3}), 0, 1e-5));
}

TEST(Layers, SequentialEmptyIsIdentityAndPushBack) {
  Sequential s;
  Tensor x = randn({2, 3});
  EXPECT_TRUE(AllClose(s(x), x, 0, 0));
  EXPECT_TRUE(s.empty());
  auto r = s.push_back(std::make_shared<ReLU>());
  s.push_back(std::make_shared<Linear>(3, 1));
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].get(), r.get());
  EXPECT_EQ(s.named_children()[1].first, "1");
  EXPECT_EQ(s(x).shape(), (Shape{2, 1}));
  EXPECT_THROW(s[2], Error);
}

TEST(Layers, AddAndConcat) {
  Tensor a = tensor({1, 2, 3, 4}, {2, 2}), b = tensor({10, 20, 30, 40}, {2, 2});
  Add add_m;
  EXPECT_EQ(add_m(a, b).to_vector<float>(), (std::vector<float>{11, 22, 33, 44}));
  EXPECT_EQ(add_m(std::vector<Tensor>{a, b, a}).to_vector<float>(), (std::vector<float>{12, 24, 36, 48}));
  EXPECT_THROW(add_m(a, zeros({2, 3})), Error);
  Concat cat0(0), cat1(1);
  EXPECT_EQ(cat1(a, b).to_vector<float>(), (std::vector<float>{1, 2, 10, 20, 3, 4, 30, 40}));
  EXPECT_EQ(cat0(a, b).shape(), (Shape{4, 2}));
  // Gradients flow through both inputs.
  Tensor p = tensor({1, 2}, {2}).set_requires_grad(), q = tensor({3, 4}, {2}).set_requires_grad();
  sum(add_m(p, q)).backward();
  EXPECT_EQ(p.grad().to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_EQ(q.grad().to_vector<float>(), (std::vector<float>{1, 1}));
}

TEST(Layers, ActivationsPoolingFlattenDropoutEmbedding) {
  Tensor x = tensor({-2, -0.5, 0.5, 2}, {1, 1, 2, 2});
  EXPECT_EQ(ReLU()(x).to_vector<float>(), (std::vector<float>{0, 0, 0.5, 2}));
  EXPECT_TRUE(AllClose(ReLU6()(x * 4.0), relu6(x * 4.0), 0, 0));
  EXPECT_TRUE(AllClose(LeakyReLU(0.2)(x), tensor({-0.4, -0.1, 0.5, 2}, {1, 1, 2, 2})));
  EXPECT_TRUE(AllClose(Sigmoid()(x), sigmoid(x), 0, 0));
  EXPECT_TRUE(AllClose(Tanh()(x), qslim::tanh(x), 0, 0));
  EXPECT_TRUE(AllClose(Hardswish()(x), hardswish(x), 0, 0));
  EXPECT_TRUE(AllClose(Hardsigmoid()(x), hardsigmoid(x), 0, 0));
  EXPECT_TRUE(AllClose(SiLU()(x), silu(x), 0, 0));
  EXPECT_TRUE(AllClose(GELU(true)(x), gelu(x, true), 0, 0));
  EXPECT_EQ(GELU().type_name(), "GELU");

  Tensor img = arange(0, 16, 1, DType::F32).reshape({1, 1, 4, 4});
  EXPECT_EQ(MaxPool2D(2)(img).to_vector<float>(), (std::vector<float>{5, 7, 13, 15}));
  EXPECT_EQ(AvgPool2D(2)(img).to_vector<float>(), (std::vector<float>{2.5, 4.5, 10.5, 12.5}));
  EXPECT_EQ(AdaptiveAvgPool2D(1)(img).to_vector<float>(), (std::vector<float>{7.5}));
  EXPECT_EQ(MaxPool2D(3, 2, 1).stride(), Size2(2));
  EXPECT_EQ(Flatten()(img).shape(), (Shape{1, 16}));
  EXPECT_TRUE(Identity()(img).is_same(img));

  Dropout d(0.5);
  d.eval();
  EXPECT_TRUE(AllClose(d(img), img, 0, 0));
  d.train();
  Generator g(3);
  d.set_generator(&g);
  auto dv = d(img).to_vector<float>();
  for (size_t i = 0; i < dv.size(); ++i) EXPECT_TRUE(dv[i] == 0.0f || dv[i] == 2.0f * i);

  Embedding e(5, 3, /*padding_idx=*/2);
  EXPECT_EQ(e.weight().select(0, 2).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  Tensor out = e(from_vector<int64_t>({4, 2}, {2}));
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_TRUE(AllClose(out.select(0, 0), e.weight().select(0, 4), 0, 0));
}
