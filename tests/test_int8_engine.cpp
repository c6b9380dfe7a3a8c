// Whole-model tests of the INT8 engine: tracing, planning, and the engine's logits against the
// converted model's simulated path on Fashion-MNIST test images.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/int8_gemm.h"
#include "core/factory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "data/fashion_mnist.h"
#include "models/registry.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/pooling.h"
#include "nn/residual.h"
#include "nn/linear.h"
#include "nn/optim/sgd.h"
#include "quant/converted_layers.h"
#include "quant/dynamic_quant.h"
#include "quant/int8_engine.h"
#include "quant/int8_graph.h"
#include "quant/qat.h"
#include "quant/quantized_io.h"
#include "tests/support/test_support.h"

namespace qslim {
using qslim::testing::expect_error;

namespace {

using quant::Int8Engine;
using quant::PlanOp;
using quant::QuantConfig;
using quant::QuantSettings;

struct Data {
  Tensor train_x, train_y, test_x, test_y;
};

Tensor normalized(const Tensor& u8_images) {
  std::vector<float> v = u8_images.to_vector<float>();
  for (float& x : v) x = (x / 255.0f - 0.2860f) / 0.3530f;
  return from_vector(v, u8_images.shape());
}

const Data& fashion() {
  static const Data d = [] {
    const std::string dir = testing::fashion_mnist_dir();
    EXPECT_FALSE(dir.empty()) << "Fashion-MNIST not found";
    auto train = data::load_fashion_mnist(true, dir, 1024);
    auto test = data::load_fashion_mnist(false, dir, 512);
    return Data{normalized(train->images()), train->labels(), normalized(test->images()), test->labels()};
  }();
  return d;
}

// Quanters observe in train mode; BatchNorm stays in eval so the ranges are those the eval-mode
// model sees.
void calibrate(nn::Module& model) {
  NoGradGuard no_grad;
  model.train();
  for (auto& [name, m] : model.named_modules())
    if (m->type_name() == "BatchNorm2D") m->eval();
  for (int i = 0; i < 4; ++i) model(fashion().train_x.narrow(0, 128 * i, 128));
}

// FP32 weights after `steps` SGD steps on the training slice (so the logits have margins),
// trained once per (spec, steps) and shared by the tests.
const nn::NamedTensors& trained(const std::string& spec, int steps) {
  static std::map<std::pair<std::string, int>, nn::NamedTensors> cache;
  auto it = cache.find({spec, steps});
  if (it != cache.end()) return it->second;
  manual_seed(3);
  const Data& d = fashion();
  nn::ModulePtr model = models::create_model(spec);
  model->train();
  optim::GroupOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  optim::SGD opt(model->parameters(), o);
  for (int i = 0; i < steps; ++i) {
    const int64_t start = (i * 64) % (d.train_x.size(0) - 64);
    Tensor loss = cross_entropy((*model)(d.train_x.narrow(0, start, 64)), d.train_y.narrow(0, start, 64));
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  nn::NamedTensors state;
  for (auto& [name, t] : model->state_dict()) state.emplace_back(name, t.detach().clone());
  return cache[{spec, steps}] = state;
}

// A converted model: trained FP32 weights, QAT wrapping, calibration, convert.
nn::ModulePtr make_converted(const std::string& spec, const QuantConfig& config, int train_steps) {
  nn::ModulePtr model = models::create_model(spec);
  model->load_state_dict(trained(spec, train_steps));
  quant::quant_aware(*model, config);
  calibrate(*model);
  quant::convert(*model);
  model->eval();
  return model;
}

Tensor simulated(nn::Module& model, const Tensor& x) {
  NoGradGuard no_grad;
  model.eval();
  return model(x);
}

std::vector<int64_t> argmax_rows(const Tensor& logits) {
  const auto v = logits.to_vector<float>();
  const int64_t n = logits.size(0), k = logits.size(1);
  std::vector<int64_t> out(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (v[i * k + j] > v[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

struct Agreement {
  double top1 = 0;       // share of images with the same top-1
  double max_steps = 0;  // largest |engine - simulated| in output steps (max |logit| / 127)
  double mean_steps = 0;
  // Top-2 margin (simulated logits, in output steps) of the images whose top-1 differs.
  double min_flipped_margin = INFINITY, max_flipped_margin = 0;
};

Agreement agreement(const Tensor& engine, const Tensor& sim) {
  EXPECT_EQ(engine.shape(), sim.shape());
  const auto a = engine.to_vector<float>(), b = sim.to_vector<float>();
  double amax = 0;
  for (float v : b) amax = std::max(amax, static_cast<double>(std::fabs(v)));
  const double step = amax / 127.0;
  Agreement r;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]) / step;
    EXPECT_TRUE(std::isfinite(a[i])) << i;
    r.max_steps = std::max(r.max_steps, d);
    r.mean_steps += d / a.size();
  }
  const auto ta = argmax_rows(engine), tb = argmax_rows(sim);
  int64_t same = 0;
  for (size_t i = 0; i < ta.size(); ++i) {
    same += ta[i] == tb[i];
    if (ta[i] != tb[i]) {
      const int64_t k = engine.size(1);
      std::vector<float> row(b.begin() + i * k, b.begin() + (i + 1) * k);
      std::sort(row.rbegin(), row.rend());
      r.min_flipped_margin = std::min(r.min_flipped_margin, (row[0] - row[1]) / step);
      r.max_flipped_margin = std::max(r.max_flipped_margin, (row[0] - row[1]) / step);
    }
  }
  r.top1 = static_cast<double>(same) / ta.size();
  return r;
}

// Engine vs simulated on the 512 test images at batch 256, plus batch-size invariance.
// Every image whose top-1 differs must be a near tie of the simulated logits (margin below one
// output step, where the per-element tolerance can flip the order), and the top-1 agreement must
// reach min_top1.
Agreement check_model(const std::string& label, const nn::ModulePtr& model, Int8Engine& engine, double max_steps,
                      double min_top1 = 0.995) {
  const Data& d = fashion();
  Tensor sim = simulated(*model, d.test_x);
  Tensor eng = Tensor::empty(sim.shape());
  for (int64_t s = 0; s < d.test_x.size(0); s += 256) eng.narrow(0, s, 256).copy_(engine.run(d.test_x.narrow(0, s, 256)));
  Agreement a = agreement(eng, sim);
  std::printf("%-28s top-1 agreement %.2f%%  max |diff| %.2f steps  mean %.4f steps", label.c_str(), 100 * a.top1,
              a.max_steps, a.mean_steps);
  if (a.top1 < 1) std::printf("  (flipped images: margins %.2f..%.2f steps)", a.min_flipped_margin, a.max_flipped_margin);
  std::printf("\n");
  EXPECT_GE(a.top1, min_top1) << label;
  EXPECT_LT(a.max_flipped_margin, 1.0) << label;
  EXPECT_LE(a.max_steps, max_steps) << label;

  // Batch 1 and batch 7 give the per-image results of batch 256.
  Tensor first = eng.narrow(0, 0, 7);
  EXPECT_TRUE(testing::AllClose(engine.run(d.test_x.narrow(0, 0, 7)), first, 0, 1e-5)) << label << " batch 7";
  for (int64_t i : {0, 3, 6})
    EXPECT_TRUE(testing::AllClose(engine.run(d.test_x.narrow(0, i, 1)), eng.narrow(0, i, 1), 0, 1e-5))
        << label << " batch 1, image " << i;
  return a;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("qslim_int8_engine_" + name)).string();
}

// Per planned node: the engine's output (dequantized) against the module chain run in float on
// the engine's own inputs (local) or on the simulated inputs (accumulated), in steps of the
// engine's grid (u8 values: after quantizing the simulated value onto that grid, so exact
// agreement is 0 and a rounding flip is 1) or of max |value| / 127 for f32 values.
struct LayerAgreement {
  double max_steps = 0;    // largest difference over all values
  double flip_share = 0;   // largest share of elements of one value off by more than half a step
};

LayerAgreement per_value_flips(const nn::ModulePtr& model, const Shape& in_shape, const Tensor& x, bool print,
                               bool local = true) {
  Int8Engine engine(model, in_shape, {false});
  engine.run(x);
  const auto& g = engine.plan().graph;
  NoGradGuard no_grad;
  std::vector<Tensor> v(g.values.size());
  v[g.input] = x;
  LayerAgreement worst;
  for (const auto& pn : engine.plan().nodes) {
    for (size_t k = pn.traced; k <= static_cast<size_t>(pn.fused.empty() ? pn.traced : pn.fused.back()); ++k) {
      const auto& n = g.nodes[k];
      std::vector<Tensor> in;
      for (int i : n.inputs) in.push_back(local && k == static_cast<size_t>(pn.traced) ? engine.inspect(i) : v[i]);
      if (n.kind == quant::TracedNode::Kind::Reshape) {
        Shape s{x.size(0)};
        s.insert(s.end(), g.values[n.output].shape.begin(), g.values[n.output].shape.end());
        v[n.output] = in[0].reshape(s);
      } else {
        v[n.output] = in.size() == 1 ? n.module->forward(in[0]) : n.module->forward(in);
      }
    }
    const Tensor got = engine.inspect(pn.output);
    const auto a = got.to_vector<float>(), b = v[pn.output].to_vector<float>();
    const bool u8 = pn.out.kind == quant::Want::Kind::U8;
    double amax = 1e-12;
    for (float t : b) amax = std::max(amax, static_cast<double>(std::fabs(t)));
    const float step = u8 ? pn.out.grid.scale : static_cast<float>(amax / 127.0);
    int64_t off = 0, flips = 0;
    double maxd = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const float want = u8 ? (pn.out.grid.quantize(b[i]) - pn.out.grid.zero_point) * pn.out.grid.scale : b[i];
      const double d = std::fabs(a[i] - want) / step;
      maxd = std::max(maxd, d);
      off += d > 1.01;
      flips += d > 0.5;
    }
    const double share = static_cast<double>(off) / a.size();
    worst.max_steps = std::max(worst.max_steps, maxd);
    worst.flip_share = std::max(worst.flip_share, static_cast<double>(flips) / a.size());
    if (print)
      std::printf("  %-28s %-14s %s  max %.2f steps, %.4f%% off by > 1 step, %.4f%% by > 0.5\n",
                  g.nodes[pn.traced].name.c_str(), quant::plan_op_name(pn.op), u8 ? "u8 " : "f32", maxd, 100 * share,
                  100.0 * flips / a.size());
  }
  return worst;
}

// ---------------------------------------------------------------- tracing

struct FunctionalNet : nn::Module {
  FunctionalNet() {
    register_module("a", std::make_shared<nn::Linear>(4, 4));
    register_module("b", std::make_shared<nn::Linear>(4, 2));
  }
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override { return child("b")(mul(child("a")(x), 2.0)); }
  std::string type_name() const override { return "FunctionalNet"; }
};

struct TailNet : nn::Module {
  TailNet() { register_module("a", std::make_shared<nn::Linear>(4, 4)); }
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override { return mul(child("a")(x), 3.0); }
  std::string type_name() const override { return "TailNet"; }
};

TEST(Int8Trace, LeNetGraphHasItsLeavesAndTheFlattenAsReshape) {
  auto model = models::create_model("lenet");
  model->eval();
  Tensor x = randn({2, 1, 28, 28});
  quant::TracedGraph g = quant::trace_model(*model, x);
  std::vector<std::string> names;
  for (const auto& n : g.nodes) names.push_back(n.kind == quant::TracedNode::Kind::Reshape ? "reshape" : n.name);
  const std::vector<std::string> want{"conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "reshape",
                                      "fc1",   "relu3", "fc2",   "relu4", "fc3"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(g.values[g.nodes[6].output].shape, (Shape{400}));
  EXPECT_EQ(g.values[g.output].shape, (Shape{10}));
  EXPECT_TRUE(testing::AllClose(g.replay(x), simulated(*model, x), 0, 0));
}

TEST(Int8Trace, ConvertedLayersAreOneNodeAndResidualsJoin) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 0);
  quant::TracedGraph g = quant::trace_model(*model, fashion().test_x.narrow(0, 0, 2));
  int converted = 0, adds = 0;
  for (const auto& n : g.nodes) {
    if (n.kind != quant::TracedNode::Kind::Module) continue;
    converted += n.module->type_name() == "ConvertedConv2D" || n.module->type_name() == "ConvertedLinear";
    if (n.module->type_name() == "Add") {
      ++adds;
      EXPECT_EQ(n.inputs.size(), 2u);
    }
  }
  EXPECT_EQ(converted, 19 + 2 + 1);  // 19 convs, 2 projection shortcuts, fc
  EXPECT_EQ(adds, 9);
}

TEST(Int8Trace, FunctionalOpsBetweenModulesAreRejectedByName) {
  auto net = std::make_shared<FunctionalNet>();
  net->eval();
  expect_error([&] { quant::trace_model(*net, randn({2, 4})); }, {"'b' (Linear)", "functional op"});
  auto tail = std::make_shared<TailNet>();
  tail->eval();
  expect_error([&] { quant::trace_model(*tail, randn({2, 4})); }, {"TailNet", "functional op"});
  expect_error([&] { quant::trace_model(*tail, randn({4})); }, {"[N, ...]"});
  TailNet on_stack;
  expect_error([&] { quant::trace_model(on_stack, randn({2, 4})); }, {"shared_ptr"});
}

// ---------------------------------------------------------------- planning

TEST(Int8Plan, LeNetRunsOnIntegersWithReluAndPoolOnTheNextLayersGrid) {
  auto model = make_converted("lenet", QuantConfig(), 0);
  Int8Engine engine(model, {1, 28, 28});
  const auto& plan = engine.plan();
  EXPECT_EQ(plan.count(PlanOp::ConvInt8), 2);
  EXPECT_EQ(plan.count(PlanOp::LinearInt8), 3);
  EXPECT_EQ(plan.count(PlanOp::Float), 0) << plan.describe();
  // conv1 writes uint8 on conv2's input grid (ReLU fused); fc3 writes f32 logits.
  EXPECT_EQ(plan.nodes[0].out.kind, quant::Want::Kind::U8) << plan.describe();
  EXPECT_EQ(plan.nodes[0].fused.size(), 1u);
  EXPECT_EQ(plan.nodes.back().out.kind, quant::Want::Kind::F32);
  // One quantize of the input, and no other conversions.
  EXPECT_EQ(engine.count_steps("quantize"), 1) << engine.describe();
  EXPECT_EQ(engine.count_steps("requantize") + engine.count_steps("dequantize"), 0) << engine.describe();
  EXPECT_EQ(engine.count_steps("int8 linear (NHWC columns)"), 1) << engine.describe();
  // The first pool is fused into conv1 where the pixel-lane kernel runs; the second is its own step.
  const bool fused = cpu::int8_isa_supported(cpu::Int8Isa::Avx512Vnni) && __builtin_cpu_supports("avx512vbmi");
  EXPECT_EQ(engine.count_steps("int8 conv 5x5 s1 + maxpool 2x2"), fused ? 1 : 0) << engine.describe();
  EXPECT_EQ(engine.count_steps("int8 maxpool"), fused ? 1 : 2) << engine.describe();
  Int8Engine kept(model, {1, 28, 28}, {false});
  EXPECT_EQ(kept.count_steps("int8 maxpool"), 2) << "reuse_buffers = false keeps every value";
}

TEST(Int8Plan, ResNetFoldsEveryBatchNormIntoItsConv) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 0);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_EQ(engine.plan().count(PlanOp::Float), 0) << engine.plan().describe();
  EXPECT_EQ(engine.plan().count(PlanOp::ConvInt8), 21);
  int folded = 0;
  for (const auto& p : engine.plan().nodes) folded += !p.bn_scale.empty();
  EXPECT_EQ(folded, 21);
  EXPECT_EQ(engine.count_steps("float"), 0) << engine.describe();
}

// ---------------------------------------------------------------- engine vs simulated

TEST(Int8Engine, LeNetMatchesTheSimulatedPath) {
  auto model = make_converted("lenet", QuantConfig(), 30);
  Int8Engine engine(model, {1, 28, 28});
  check_model("lenet", model, engine, 2.0);
}

TEST(Int8Engine, ResNet20HalfWidthMatchesTheSimulatedPath) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 40);
  Int8Engine engine(model, {1, 28, 28});
  // This barely trained narrow net has many near ties; the margin check above is the strict one.
  check_model("resnet20:width=0.5", model, engine, 4.0, 0.99);
}

TEST(Int8Engine, EveryLayerMatchesItsSimulatedModuleWithinOneStep) {
  for (const char* spec : {"resnet20:width=0.5", "mobilenet_v2_small"}) {
    QuantSettings full;
    full.is_full_quantize = true;
    for (const QuantConfig& config : {QuantConfig(), QuantConfig(full)}) {
      auto model = make_converted(spec, config, std::string(spec) == "mobilenet_v2_small" ? 6 : 40);
      const LayerAgreement a = per_value_flips(model, {1, 28, 28}, fashion().test_x.narrow(0, 0, 128), false);
      std::printf("%-20s full=%d  per layer: max %.3f steps, at most %.4f%% of a value off by one step\n", spec,
                  config.settings().is_full_quantize, a.max_steps, 100 * a.flip_share);
      EXPECT_LE(a.max_steps, 1.0 + 1e-3) << spec;
      EXPECT_LE(a.flip_share, 0.005) << spec;
    }
  }
}

TEST(Int8Engine, ResNet20FullWidthMatchesTheSimulatedPath) {
  auto model = make_converted("resnet20", QuantConfig(), 4);
  Int8Engine engine(model, {1, 28, 28});
  check_model("resnet20", model, engine, 4.0);
}

TEST(Int8Engine, MobileNetV2SmallMatchesTheSimulatedPath) {
  auto model = make_converted("mobilenet_v2_small", QuantConfig(), 6);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_GT(engine.count_steps("int8 depthwise"), 5) << engine.describe();
  EXPECT_EQ(engine.count_steps("float"), 0) << engine.describe();
  check_model("mobilenet_v2_small", model, engine, 4.0);
}

TEST(Int8Engine, TilesBufferReuseAndThreadsDoNotChangeTheResult) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 40);
  Tensor x = fashion().test_x.narrow(0, 0, 100);
  Int8Engine tiled(model, {1, 28, 28});
  quant::Int8EngineOptions one_piece;
  one_piece.tile_bytes = 0;
  Int8Engine whole(model, {1, 28, 28}, one_piece);
  Int8Engine kept(model, {1, 28, 28}, {false});
  ASSERT_GT(tiled.tile(), 0);
  ASSERT_LT(tiled.tile(), 100) << "the test needs several tiles";
  const Tensor want = whole.run(x);
  EXPECT_TRUE(testing::AllClose(tiled.run(x), want, 0, 0));
  EXPECT_TRUE(testing::AllClose(kept.run(x), want, 0, 0));
  set_num_threads(1);
  EXPECT_TRUE(testing::AllClose(tiled.run(x), want, 0, 0));
  set_num_threads(0);
  // A larger batch after a smaller one grows the buffers.
  EXPECT_TRUE(testing::AllClose(whole.run(x.narrow(0, 0, 3)), want.narrow(0, 0, 3), 0, 0));
  EXPECT_TRUE(testing::AllClose(whole.run(x), want, 0, 0));
  EXPECT_GT(whole.buffer_bytes(), tiled.buffer_bytes());
}

TEST(Int8Engine, SavedAndLoadedModelGivesTheSameLogits) {
  const QuantConfig config;
  auto model = make_converted("resnet20:width=0.5", config, 40);
  const std::string path = temp_path("resnet20.safetensors");
  quant::save_converted(path, *model, config, "resnet20:width=0.5");
  nn::ModulePtr loaded = quant::load_converted(path);
  std::remove(path.c_str());
  Tensor x = fashion().test_x.narrow(0, 0, 64);
  Int8Engine a(model, {1, 28, 28}), b(loaded, {1, 28, 28});
  EXPECT_TRUE(testing::AllClose(b.run(x), a.run(x), 0, 0));
}

TEST(Int8Engine, LayerSkippedByTheConfigRunsInFloat) {
  QuantSettings s;
  s.not_quant_pattern = {"fc2"};
  auto model = make_converted("lenet", QuantConfig(s), 30);
  EXPECT_EQ(model->get_submodule("fc2")->type_name(), "Linear");
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_EQ(engine.count_steps("float fc2"), 1) << engine.describe();
  EXPECT_EQ(engine.plan().count(PlanOp::LinearInt8), 2);
  check_model("lenet, fc2 skipped", model, engine, 2.0);

  // A skip() scope: the whole first block of a ResNet stays float.
  auto resnet = models::create_model("resnet20:width=0.5");
  resnet->load_state_dict(trained("resnet20:width=0.5", 40));
  QuantConfig scoped;
  scoped.skip(resnet->get_submodule("layers.0").get());
  quant::quant_aware(*resnet, scoped);
  calibrate(*resnet);
  quant::convert(*resnet);
  Int8Engine e2(resnet, {1, 28, 28});
  EXPECT_GE(e2.count_steps("float"), 2) << e2.describe();
  check_model("resnet20/2, layers.0 skipped", resnet, e2, 4.0, 0.99);
}

TEST(Int8Engine, FullQuantizeRunsTheIntegerAddAndPool) {
  QuantSettings s;
  s.is_full_quantize = true;
  auto model = make_converted("resnet20:width=0.5", QuantConfig(s), 40);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_EQ(engine.plan().count(PlanOp::AddInt8), 9) << engine.plan().describe();
  EXPECT_EQ(engine.plan().count(PlanOp::GlobalPoolInt8), 1);
  EXPECT_EQ(engine.count_steps("float"), 0) << engine.describe();
  check_model("resnet20/2 full quantize", model, engine, 4.0, 0.99);

  auto mobile = make_converted("mobilenet_v2_small", QuantConfig(s), 6);
  Int8Engine e2(mobile, {1, 28, 28});
  EXPECT_GT(e2.plan().count(PlanOp::AddInt8), 0);
  check_model("mobilenet_v2_small full", mobile, e2, 4.0);
}

TEST(Int8Engine, FoldedBatchNormAndUnsignedActivations) {
  QuantSettings s;
  s.fold_bn = true;
  s.dtype = "uint8";
  auto model = make_converted("resnet20:width=0.5", QuantConfig(s), 40);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_EQ(engine.plan().count(PlanOp::Float), 0) << engine.plan().describe();
  check_model("resnet20/2 fold_bn uint8", model, engine, 4.0, 0.99);
}

TEST(Int8Engine, MobileNetV3UsesTablesForActivationsAndFloatForSqueezeExcite) {
  QuantSettings s;
  s.is_full_quantize = true;
  auto model = make_converted("mobilenet_v3_small", QuantConfig(s), 0);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_GT(engine.count_steps("lookup Hardswish"), 3) << engine.describe();
  EXPECT_GT(engine.count_steps("float "), 0) << engine.describe();  // the squeeze-excite multiplies
  const LayerAgreement a = per_value_flips(model, {1, 28, 28}, fashion().test_x.narrow(0, 0, 32), false);
  EXPECT_LE(a.max_steps, 1.0 + 1e-3);
  // The final average pool's inputs take few distinct values, so exact rounding ties of its
  // quantized mean (broken by the float summation order) are frequent there.
  EXPECT_LE(a.flip_share, 0.02);
  Tensor x = fashion().test_x.narrow(0, 0, 8);
  EXPECT_TRUE(testing::AllClose(engine.run(x.narrow(0, 0, 1)), engine.run(x).narrow(0, 0, 1), 0, 0));
}

// Two conv branches joined by a Concat module, then a classifier.
struct ConcatNet : nn::Module {
  ConcatNet() {
    register_module("a", std::make_shared<nn::Conv2D>(1, 4, 3, 2, 1));
    register_module("b", std::make_shared<nn::Conv2D>(1, 6, 1, 2));
    register_module("cat", std::make_shared<nn::Concat>(1));
    register_module("relu", std::make_shared<nn::ReLU>());
    register_module("pool", std::make_shared<nn::MaxPool2D>(2));
    register_module("fc", std::make_shared<nn::Linear>(10 * 7 * 7, 10));
  }
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override {
    Tensor h = child("pool")(child("relu")(child("cat")(child("a")(x), child("b")(x))));
    return child("fc")(h.flatten(1));
  }
  std::string type_name() const override { return "ConcatNet"; }
};

TEST(Int8Engine, QuantizedConcatJoinsBranchesOnOneGrid) {
  manual_seed(12);
  auto net = std::make_shared<ConcatNet>();
  QuantSettings s;
  s.quantize_op_types = {"concat", "conv2d", "mul"};
  quant::quant_aware(*net, QuantConfig(s));
  calibrate(*net);
  quant::convert(*net);
  Int8Engine engine(net, {1, 28, 28});
  EXPECT_EQ(engine.plan().count(PlanOp::ConcatInt8), 1) << engine.plan().describe();
  EXPECT_EQ(engine.count_steps("int8 concat"), 1) << engine.describe();
  EXPECT_EQ(engine.count_steps("float"), 0) << engine.describe();
  // Both convs write straight onto the concat's grid; the linear reads the pooled map in NHWC order.
  EXPECT_EQ(engine.count_steps("requantize") + engine.count_steps("dequantize"), 0) << engine.describe();
  EXPECT_EQ(engine.count_steps("int8 linear (NHWC columns)"), 1) << engine.describe();
  const LayerAgreement a = per_value_flips(net, {1, 28, 28}, fashion().test_x.narrow(0, 0, 64), false);
  EXPECT_LE(a.max_steps, 1.0 + 1e-3);
  EXPECT_LE(a.flip_share, 0.005);
  check_model("concat net", net, engine, 2.0);
}

TEST(Int8Engine, BiasThatOverflowsInt32RunsInFloat) {
  auto model = make_converted("lenet", QuantConfig(), 30);
  // A floored input step (an all-zero calibration) makes fc3's bias 1e8 accumulator units or more.
  model->get_submodule("fc3")->buffer("input_scale").fill_(1e-8);
  Int8Engine engine(model, {1, 28, 28});
  EXPECT_EQ(engine.count_steps("float fc3"), 1) << engine.describe();
  EXPECT_EQ(engine.count_steps("int8 linear"), 2);
  Tensor x = fashion().test_x.narrow(0, 0, 32);
  EXPECT_TRUE(testing::AllClose(engine.run(x), simulated(*model, x), 1e-4, 1e-4));
}

TEST(Int8Engine, DynamicQuantizedModelRunsThroughItsOwnForward) {
  manual_seed(5);
  auto model = models::create_model("lenet");
  quant::quant_post_dynamic(*model, quant::DynamicOptions());
  model->eval();
  Int8Engine engine(model, {1, 28, 28});
  Tensor x = fashion().test_x.narrow(0, 0, 16);
  EXPECT_TRUE(testing::AllClose(engine.run(x), simulated(*model, x), 1e-5, 1e-5));
}

TEST(Int8Engine, RejectsInputsOfTheWrongShape) {
  auto model = make_converted("lenet", QuantConfig(), 0);
  Int8Engine engine(model, {1, 28, 28});
  expect_error([&] { engine.run(randn({2, 1, 32, 32})); }, {"Int8Engine::run", "[2, 1, 32, 32]", "[1, 28, 28]"});
  expect_error([&] { engine.run(randn({1, 28, 28})); }, {"Int8Engine::run", "[1, 28, 28]"});
  expect_error([&] { Int8Engine(model, {3, 28, 28}); }, {"ConvertedConv2D", "[2, 3, 28, 28]"});
}

// A float add whose consumers all read one grid writes its sum straight onto that grid (no f32
// copy); MobileNetV2's inverted-residual adds feed only the next block's expand conv.
TEST(Int8Engine, FloatAddFeedingOnlyIntegerLayersWritesUint8) {
  auto model = make_converted("mobilenet_v2_small", QuantConfig(), 6);
  Int8Engine engine(model, {1, 28, 28});
  const std::string program = engine.describe();
  int u8_adds = 0;
  for (size_t at = program.find("add f32"); at != std::string::npos; at = program.find("add f32", at + 1)) {
    const std::string line = program.substr(at, program.find('\n', at) - at);
    EXPECT_EQ(line.find(" and u8"), std::string::npos) << line;
    u8_adds += line.find("-> u8") != std::string::npos;
  }
  EXPECT_EQ(u8_adds, engine.plan().count(PlanOp::AddF32)) << program;
  EXPECT_GT(u8_adds, 0);
  const LayerAgreement a = per_value_flips(model, {1, 28, 28}, fashion().test_x.narrow(0, 0, 64), false);
  EXPECT_LE(a.max_steps, 1.0 + 1e-3);
  EXPECT_LE(a.flip_share, 0.005);
}

// ---------------------------------------------------------------- integer residual adds

quant::Int8EngineOptions residual_options(bool reuse = true) {
  quant::Int8EngineOptions o;
  o.reuse_buffers = reuse;
  o.integer_residual_adds = true;
  return o;
}

double grid_lo(const quant::U8Grid& g) { return (g.qmin - g.zero_point) * static_cast<double>(g.scale); }
double grid_hi(const quant::U8Grid& g) { return (g.qmax - g.zero_point) * static_cast<double>(g.scale); }

TEST(Int8ResidualAdd, BranchGridClipsOnlyWhereTheClampedSumCannotChange) {
  quant::U8Grid relu_out{0.05f, 128, 128, 255}, relu_skip{0.04f, 128, 128, 255};
  quant::U8Grid signed_out{0.02f, 128, 0, 255}, unsigned_skip{0.03f, 0, 0, 255}, relu6_out{6.0f / 127, 128, 128, 255};
  const std::vector<std::pair<quant::U8Grid, quant::U8Grid>> cases = {
      {relu_out, relu_skip}, {signed_out, signed_out}, {relu_out, unsigned_skip}, {relu6_out, signed_out}};
  for (const auto& [out, skip] : cases) {
    quant::U8Grid b;
    ASSERT_TRUE(quant::branch_grid_for_residual_add(out, skip, &b)) << out.to_string() << " " << skip.to_string();
    EXPECT_EQ(b.qmin, 0);
    EXPECT_EQ(b.qmax, 255);
    // The branch grid spans [out_lo - skip_hi, out_hi - skip_lo] ...
    EXPECT_LE(grid_lo(b), grid_lo(out) - grid_hi(skip) + 1e-6);
    EXPECT_GE(grid_hi(b), grid_hi(out) - grid_lo(skip) - 1e-6);
    // ... within a step of the span at each end (the step is the span over 254).
    EXPECT_LE(b.scale * 254.0, (grid_hi(out) - grid_lo(skip)) - std::min(0.0, grid_lo(out) - grid_hi(skip)) + 1e-5);
    // A branch value beyond the grid gives the same output as the grid's end value, for every skip.
    for (int qs = skip.qmin; qs <= skip.qmax; ++qs) {
      const float s = (qs - skip.zero_point) * skip.scale;
      for (float beyond : {1.0f, 3.5f, 100.0f}) {
        const float above = static_cast<float>(grid_hi(b)) + beyond * b.scale;
        const float below = static_cast<float>(grid_lo(b)) - beyond * b.scale;
        EXPECT_EQ(out.quantize(above + s), out.quantize(static_cast<float>(grid_hi(b)) + s)) << qs;
        EXPECT_EQ(out.quantize(below + s), out.quantize(static_cast<float>(grid_lo(b)) + s)) << qs;
      }
    }
  }
  quant::U8Grid dummy;
  EXPECT_FALSE(quant::branch_grid_for_residual_add(quant::U8Grid{0.0f, 128, 128, 128}, quant::U8Grid{0.0f, 0, 0, 0},
                                                   &dummy));
}

TEST(Int8ResidualAdd, ResNetPlansItsResidualAddsOnIntegers) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 40);
  Int8Engine plain(model, {1, 28, 28});
  EXPECT_EQ(plain.plan().count(PlanOp::ResidualAddInt8), 0) << "off by default";
  Int8Engine engine(model, {1, 28, 28}, residual_options());
  const auto& plan = engine.plan();
  // Blocks with an identity shortcut add on integers; the two projection blocks (both inputs are
  // conv outputs) and the last block (its sum feeds the float pool) stay float adds.
  EXPECT_EQ(plan.count(PlanOp::ResidualAddInt8), 6) << plan.describe();
  EXPECT_EQ(plan.count(PlanOp::AddF32), 3) << plan.describe();
  EXPECT_EQ(engine.count_steps("float"), 0) << engine.describe();
  EXPECT_EQ(engine.count_steps("quantize"), 2) << engine.describe();  // the input and the fc's input
  EXPECT_EQ(engine.count_steps("requantize") + engine.count_steps("dequantize"), 0) << engine.describe();
  const auto& g = plan.graph;
  for (const auto& p : plan.nodes) {
    const std::string& name = g.nodes[p.traced].name;
    if (p.op == PlanOp::ResidualAddInt8) {
      EXPECT_EQ(p.out.kind, quant::Want::Kind::U8) << name;
      EXPECT_EQ(p.out.grid.qmin, p.out.grid.zero_point) << name << ": the ReLU is fused into qmin";
    } else if (p.op == PlanOp::AddF32) {
      // Projection blocks write their float sum straight onto the next convs' grid; the last one f32.
      EXPECT_EQ(p.out.kind, name == "layers.8.add" ? quant::Want::Kind::F32 : quant::Want::Kind::U8) << name;
    }
  }
  // Every conv writes uint8 except the last block's conv2 and the projection blocks' branches.
  EXPECT_EQ(engine.count_steps("int8 conv"), 21);
  int f32_convs = 0;
  for (const auto& p : plan.nodes) f32_convs += p.op == PlanOp::ConvInt8 && p.out.kind == quant::Want::Kind::F32;
  EXPECT_EQ(f32_convs, 5) << plan.describe();
}

// The engine's integer add against a float reference of the same plan: the dequantized codes of its
// two inputs, summed in double, ReLU, rounded half to even onto the output grid. Only exact ties
// (where the float multiplies of the kernel may land on either side) may differ.
TEST(Int8ResidualAdd, IntegerAddMatchesTheFloatSumOfItsInputCodes) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 40);
  Int8Engine engine(model, {1, 28, 28}, residual_options(false));
  engine.run(fashion().test_x.narrow(0, 0, 32));
  int adds = 0;
  int64_t elements = 0, ties = 0;
  for (const auto& p : engine.plan().nodes) {
    if (p.op != PlanOp::ResidualAddInt8) continue;
    ++adds;
    const auto a = engine.inspect(p.inputs[0]).to_vector<float>(), b = engine.inspect(p.inputs[1]).to_vector<float>();
    const auto y = engine.inspect(p.output).to_vector<float>();
    ASSERT_EQ(a.size(), y.size());
    const quant::U8Grid& o = p.out.grid;
    for (size_t i = 0; i < y.size(); ++i) {
      // The inputs are exact dequantized codes: recover them and check they lie on the planned grids.
      for (int k = 0; k < 2; ++k) {
        const quant::U8Grid& gk = p.in_grids[k];
        const double q = static_cast<double>(k == 0 ? a[i] : b[i]) / gk.scale + gk.zero_point;
        ASSERT_NEAR(q, std::nearbyint(q), 1e-3) << "input " << k << " is off its grid " << gk.to_string();
        ASSERT_GE(std::nearbyint(q), gk.qmin);
        ASSERT_LE(std::nearbyint(q), gk.qmax);
      }
      const double v = std::max(0.0, static_cast<double>(a[i]) + b[i]) / o.scale;
      const double want = std::clamp(std::nearbyint(v) + o.zero_point, static_cast<double>(o.qmin),
                                     static_cast<double>(o.qmax));
      const double got = std::nearbyint(static_cast<double>(y[i]) / o.scale) + o.zero_point;
      ++elements;
      if (got != want) {
        const bool tie = std::fabs(std::fabs(v - std::floor(v)) - 0.5) < 1e-4;
        EXPECT_TRUE(tie) << "element " << i << ": got code " << got << ", want " << want << " (v = " << v << ")";
        EXPECT_LE(std::fabs(got - want), 1.0);
        ++ties;
      }
    }
  }
  EXPECT_EQ(adds, 6);
  EXPECT_LE(ties, elements / 1000) << ties << " of " << elements;
}

TEST(Int8ResidualAdd, ResNet20MatchesTheSimulatedPath) {
  auto model = make_converted("resnet20", QuantConfig(), 4);
  Int8Engine engine(model, {1, 28, 28}, residual_options());
  EXPECT_EQ(engine.plan().count(PlanOp::ResidualAddInt8), 6);
  check_model("resnet20 integer adds", model, engine, 4.0);
}

TEST(Int8ResidualAdd, EveryLayerMatchesItsModuleOnTheEnginesInputs) {
  for (const char* spec : {"resnet20:width=0.5", "mobilenet_v2_small"}) {
    auto model = make_converted(spec, QuantConfig(), std::string(spec) == "mobilenet_v2_small" ? 6 : 40);
    Int8Engine probe(model, {1, 28, 28}, residual_options());
    EXPECT_GT(probe.plan().count(PlanOp::ResidualAddInt8), 0) << spec << "\n" << probe.plan().describe();
    const Tensor x = fashion().test_x.narrow(0, 0, 64);
    Int8Engine engine(model, {1, 28, 28}, residual_options(false));
    engine.run(x);
    // per_value_flips builds its own engine with the default options; check the residual plan here.
    const auto& g = engine.plan().graph;
    NoGradGuard no_grad;
    double worst_share = 0, worst_steps = 0;
    for (const auto& pn : engine.plan().nodes) {
      if (pn.out.kind != quant::Want::Kind::U8 || g.nodes[pn.traced].kind != quant::TracedNode::Kind::Module) continue;
      std::vector<Tensor> in;
      for (int i : pn.inputs) in.push_back(engine.inspect(i));
      Tensor v = in.size() == 1 ? g.nodes[pn.traced].module->forward(in[0]) : g.nodes[pn.traced].module->forward(in);
      for (int f : pn.fused) v = g.nodes[f].module->forward(v);
      const auto want = v.to_vector<float>(), got = engine.inspect(pn.output).to_vector<float>();
      int64_t flips = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const float w = (pn.out.grid.quantize(want[i]) - pn.out.grid.zero_point) * pn.out.grid.scale;
        const double d = std::fabs(got[i] - w) / pn.out.grid.scale;
        worst_steps = std::max(worst_steps, d);
        flips += d > 0.5;
      }
      worst_share = std::max(worst_share, static_cast<double>(flips) / got.size());
    }
    std::printf("%-20s integer adds, per layer: max %.3f steps, at most %.4f%% of a value off by one step\n", spec,
                worst_steps, 100 * worst_share);
    EXPECT_LE(worst_steps, 1.0 + 1e-3) << spec;
    EXPECT_LE(worst_share, 0.005) << spec;
  }
}

TEST(Int8ResidualAdd, TilesAndThreadsDoNotChangeTheResult) {
  auto model = make_converted("resnet20:width=0.5", QuantConfig(), 40);
  Tensor x = fashion().test_x.narrow(0, 0, 100);
  Int8Engine tiled(model, {1, 28, 28}, residual_options());
  quant::Int8EngineOptions whole_options = residual_options();
  whole_options.tile_bytes = 0;
  Int8Engine whole(model, {1, 28, 28}, whole_options);
  ASSERT_LT(tiled.tile(), 100);
  const Tensor want = whole.run(x);
  EXPECT_TRUE(testing::AllClose(tiled.run(x), want, 0, 0));
  set_num_threads(1);
  EXPECT_TRUE(testing::AllClose(tiled.run(x), want, 0, 0));
  set_num_threads(0);
  for (int64_t i : {0, 57})
    EXPECT_TRUE(testing::AllClose(whole.run(x.narrow(0, i, 1)), want.narrow(0, i, 1), 0, 0)) << "image " << i;
}

}  // namespace
}  // namespace qslim
