// QuantConfig (quant/quant_config.h): PaddleSlim keys and defaults, JSON parsing and its errors,
// rule resolution (default < type < name < layer), skips and rule matching at quant_aware time.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "models/lenet.h"
#include "models/registry.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/qat.h"
#include "quant/quant_config.h"
#include "tests/support/test_support.h"
#include "quant/quant_layers.h"

using namespace qslim;
using namespace qslim::quant;

using qslim::testing::expect_error;

namespace {

const PlannedLayer* find(const std::vector<PlannedLayer>& plan, const std::string& name) {
  for (const PlannedLayer& p : plan)
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<std::string> names(const std::vector<PlannedLayer>& plan) {
  std::vector<std::string> out;
  for (const PlannedLayer& p : plan) out.push_back(p.name);
  return out;
}

QuanterFactory weight_bits(int bits) { return QuanterFactory::of("channel_wise_abs_max", QuantRole::Weight, bits); }
QuanterFactory act_bits(int bits) { return QuanterFactory::of("moving_average_abs_max", QuantRole::Activation, bits); }

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "qslim_qcfg_" + name; }

}  // namespace

// ---- keys and defaults ----

TEST(QuantConfig, PaddleSlimDefaults) {
  QuantConfig c;
  const QuantSettings& s = c.settings();
  EXPECT_EQ(s.weight_quantize_type, "channel_wise_abs_max");
  EXPECT_EQ(s.activation_quantize_type, "moving_average_abs_max");
  EXPECT_EQ(s.weight_bits, 8);
  EXPECT_EQ(s.activation_bits, 8);
  EXPECT_EQ(s.not_quant_pattern, std::vector<std::string>{"skip_quant"});
  EXPECT_EQ(s.quantize_op_types, (std::vector<std::string>{"Conv2D", "DepthwiseConv2D", "Linear"}));
  EXPECT_EQ(s.dtype, "int8");
  EXPECT_EQ(s.window_size, 10000);
  EXPECT_DOUBLE_EQ(s.moving_rate, 0.9);
  EXPECT_FALSE(s.for_tensorrt);
  EXPECT_FALSE(s.is_full_quantize);
  EXPECT_EQ(s.weight_preprocess_type, Preprocess::None);
  EXPECT_EQ(s.activation_preprocess_type, Preprocess::None);
  EXPECT_EQ(s.rounding, Rounding::HalfEven);
  EXPECT_EQ(s.ste, SteMode::Clipped);
  EXPECT_FALSE(s.fold_bn);
  EXPECT_EQ(s.freeze_bn_after_steps, -1);

  const QuanterFactory w = c.default_weight(), a = c.default_activation();
  EXPECT_EQ(w.type, "channel_wise_abs_max");
  EXPECT_EQ(w.options.role, QuantRole::Weight);
  EXPECT_EQ(w.options.resolved_grid(), QuantGrid(8, GridKind::Narrow));
  EXPECT_EQ(a.type, "moving_average_abs_max");
  EXPECT_EQ(a.options.role, QuantRole::Activation);
  EXPECT_EQ(a.options.resolved_grid(), QuantGrid(8, GridKind::Signed));
  EXPECT_DOUBLE_EQ(a.options.moving_rate, 0.9);
  // The factories build working quanters; the weight one is per output channel.
  QuanterPtr wq = w.make(6);
  EXPECT_EQ(wq->type_name(), "channel_wise_abs_max");
  EXPECT_EQ(a.make()->type_name(), "moving_average_abs_max");
}

TEST(QuantConfig, JsonKeysAndPaddleOpNames) {
  QuantConfig c = QuantConfig::from_json(R"({
    "weight_quantize_type": "abs_max", "activation_quantize_type": "range_abs_max",
    "weight_bits": 4, "activation_bits": 6, "not_quant_pattern": ["head", "skip_quant"],
    "quantize_op_types": ["conv2d", "mul", "depthwise_conv2d", "matmul", "pool2d"],
    "dtype": "uint8", "window_size": 50, "moving_rate": 0.5, "is_full_quantize": false,
    "weight_preprocess_type": null, "activation_preprocess_type": "PACT", "pact_alpha": 6,
    "rounding": "half_away", "ste": "identity", "fold_bn": true, "freeze_bn_after_steps": 100
  })");
  const QuantSettings& s = c.settings();
  EXPECT_EQ(s.weight_quantize_type, "abs_max");
  EXPECT_EQ(s.activation_quantize_type, "range_abs_max");
  EXPECT_EQ(s.weight_bits, 4);
  EXPECT_EQ(s.activation_bits, 6);
  EXPECT_EQ(s.not_quant_pattern, (std::vector<std::string>{"head", "skip_quant"}));
  EXPECT_EQ(s.quantize_op_types, (std::vector<std::string>{"Conv2D", "Linear", "DepthwiseConv2D", "MaxPool2D",
                                                           "AvgPool2D", "AdaptiveAvgPool2D"}));
  EXPECT_EQ(s.window_size, 50);
  EXPECT_EQ(s.freeze_bn_after_steps, 100);
  EXPECT_TRUE(s.fold_bn);
  const QuanterFactory a = c.default_activation();
  EXPECT_EQ(a.options.resolved_grid(), QuantGrid(6, GridKind::Unsigned));  // dtype uint8
  EXPECT_EQ(a.options.preprocess, Preprocess::Pact);
  EXPECT_DOUBLE_EQ(a.options.pact.alpha, 6.0);
  EXPECT_FALSE(a.options.pact.two_sided);  // unsigned grid: PACT's one-sided clip
  EXPECT_EQ(a.options.window_size, 50);
  EXPECT_EQ(a.options.rounding, Rounding::HalfAway);
  EXPECT_EQ(a.options.ste, SteMode::Identity);
  EXPECT_EQ(a.make()->type_name(), "pact");
  EXPECT_EQ(c.default_weight().options.bits, 4);

  // to_json is read back to the same config.
  const std::string j = c.to_json();
  EXPECT_EQ(QuantConfig::from_json(j).to_json(), j);
}

TEST(QuantConfig, LsqAndGridKeys) {
  QuantConfig c = QuantConfig::from_json(
      R"({"weight_quantize_type": "lsq_plus", "activation_quantize_type": "lsq_plus", "lsq_per_channel": true,
          "activation_grid": "unsigned", "ste": "identity"})");
  EXPECT_EQ(c.default_weight().make(4)->type_name(), "lsq_plus");
  EXPECT_TRUE(c.default_weight().options.lsq_per_channel);
  EXPECT_EQ(c.default_activation().options.resolved_grid_kind(), GridKind::Unsigned);
  // LSQ has its own gradient: the STE key does not reach it.
  EXPECT_EQ(c.default_weight().options.ste, SteMode::Clipped);
  EXPECT_EQ(c.default_activation().options.ste, SteMode::Clipped);
}

TEST(QuantConfig, JsonErrorsListAllowedValuesAndNameTheSource) {
  expect_error([&] { QuantConfig::from_json(R"({"weight_bit": 8})", "cfg.json"); }, {"cfg.json", "unknown key 'weight_bit'", "weight_bits", "quantize_op_types"});
  expect_error([&] { QuantConfig::from_json(R"({"weight_bits": 32})", "cfg.json"); }, {"cfg.json", "weight_bits", "2..16"});
  expect_error([&] { QuantConfig::from_json(R"({"activation_bits": 1})"); }, {"activation_bits", "2..16"});
  expect_error([&] { QuantConfig::from_json(R"({"weight_bits": "8"})"); }, {"weight_bits", "integer"});
  expect_error([&] { QuantConfig::from_json(R"({"weight_quantize_type": "minmax"})"); }, {"'minmax'", "abs_max", "channel_wise_abs_max", "moving_average_abs_max", "lsq_plus"});
  expect_error([&] { QuantConfig::from_json(R"({"activation_quantize_type": "channel_wise_abs_max"})"); }, {"activation_quantize_type", "moving_average_abs_max"});
  expect_error([&] { QuantConfig::from_json(R"({"for_tensorrt": true, "weight_quantize_type": "abs_max"})", "trt.json"); }, {"trt.json", "for_tensorrt", "channel_wise_abs_max"});
  expect_error([&] { QuantConfig::from_json(R"({"for_tensorrt": true, "weight_bits": 4})"); }, {"for_tensorrt", "8"});
  expect_error([&] { QuantConfig::from_json(R"({"quantize_op_types": ["conv3d"]})"); }, {"conv3d", "Conv2D", "mul", "depthwise_conv2d"});
  expect_error([&] { QuantConfig::from_json(R"({"dtype": "int4"})"); }, {"dtype", "int8, uint8"});
  expect_error([&] { QuantConfig::from_json(R"({"rounding": "up"})"); }, {"rounding", "half_even, half_away"});
  expect_error([&] { QuantConfig::from_json(R"({"ste": "soft"})"); }, {"ste", "clipped, identity"});
  expect_error([&] { QuantConfig::from_json(R"({"weight_preprocess_type": "clip"})"); }, {"weight_preprocess_type", "PACT"});
  expect_error([&] { QuantConfig::from_json(R"({"freeze_bn_after_steps": 10})"); }, {"freeze_bn_after_steps", "fold_bn"});
  expect_error([&] { QuantConfig::from_json(R"({"dtype": "uint8", "activation_grid": "signed"})"); }, {"activation_grid", "uint8"});
  expect_error([&] { QuantConfig::from_json(R"({"moving_rate": 1.5})"); }, {"moving_rate", "[0, 1)"});
  expect_error([&] { QuantConfig::from_json(R"({"lsq_per_channel": true})"); }, {"lsq_per_channel", "lsq_plus"});
  expect_error([&] { QuantConfig::from_json(R"([1, 2])"); }, {"JSON object"});
  expect_error([&] { QuantConfig::from_json(R"({"weight_bits": )"); }, {"not valid JSON"});
  expect_error([&] { QuantConfig::from_json(R"({"name_config": {"fc": {"bits": 4}}})", "r.json"); }, {"r.json", "name_config 'fc'", "unknown key 'bits'", "weight_bits"});
  expect_error([&] { QuantConfig::from_json(R"({"type_config": {"Linear": {"weight_bits": 20}}})"); }, {"type_config 'Linear'", "2..16"});
  expect_error([&] { QuantConfig::from_json(R"({"for_tensorrt": true, "name_config": {"fc": {"weight_bits": 4}}})"); }, {"name_config 'fc'", "for_tensorrt"});
  // The C++ form validates the same way.
  QuantSettings s;
  s.for_tensorrt = true;
  s.weight_quantize_type = "moving_average_abs_max";
  expect_error([&] { QuantConfig{s}; }, {"for_tensorrt", "channel_wise_abs_max"});
  s.weight_quantize_type = "channel_wise_abs_max";
  QuantConfig trt(s);
  expect_error([&] { trt.add_type_config("Linear", {.weight = QuanterFactory::of("abs_max", QuantRole::Weight)}); }, {"for_tensorrt", "channel_wise_abs_max"});
}

TEST(QuantConfig, JsonFile) {
  const std::string path = temp_path("cfg.json");
  {
    std::ofstream out(path);
    out << R"({"weight_bits": 6, "type_config": {"mul": {"weight_bits": 8}}, "name_config": {"fc3": {"activation_bits": 16}}})";
  }
  QuantConfig c = QuantConfig::from_json_file(path);
  EXPECT_EQ(c.settings().weight_bits, 6);
  ASSERT_EQ(c.type_rules().size(), 1u);
  EXPECT_EQ(c.type_rules()[0].first, "Linear");
  models::LeNet5 net;
  auto plan = plan_quant_aware(net, c);
  EXPECT_EQ(find(plan, "conv1")->quant.weight.options.bits, 6);
  EXPECT_EQ(find(plan, "fc1")->quant.weight.options.bits, 8);
  EXPECT_EQ(find(plan, "fc3")->quant.activation.options.bits, 16);
  EXPECT_EQ(find(plan, "fc3")->quant.weight.options.bits, 8);

  {
    std::ofstream out(path);
    out << R"({"weight_bits": 6, "windowsize": 3})";
  }
  expect_error([&] { QuantConfig::from_json_file(path); }, {path.c_str(), "windowsize", "window_size"});
  std::remove(path.c_str());
  expect_error([&] { QuantConfig::from_json_file(path); }, {path.c_str(), "cannot open"});
}

// ---- resolution ----

TEST(QuantConfig, ResolutionDefaultTypeNameLayer) {
  models::LeNet5 net;
  QuantConfig c;
  c.add_type_config("Linear", {.weight = weight_bits(4)});
  c.add_name_config("fc2", {.weight = weight_bits(5)});
  c.add_name_config("fc3", {.weight = weight_bits(6), .activation = act_bits(10)});
  c.add_layer_config(&net.child("fc3"), {.weight = weight_bits(7)});
  c.add_name_config("fc1", {.activation = act_bits(12)});  // only the activation: the weight stays the type rule's

  auto plan = plan_quant_aware(net, c);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"conv1", "conv2", "fc1", "fc2", "fc3"}));
  auto wbits = [&](const char* n) { return find(plan, n)->quant.weight.options.bits; };
  auto abits = [&](const char* n) { return find(plan, n)->quant.activation.options.bits; };
  EXPECT_EQ(wbits("conv1"), 8);  // default
  EXPECT_EQ(find(plan, "conv1")->quant.source, "default");
  EXPECT_EQ(wbits("fc1"), 4);   // type
  EXPECT_EQ(abits("fc1"), 12);  // name (activation only)
  EXPECT_EQ(wbits("fc2"), 5);   // name beats type
  EXPECT_EQ(find(plan, "fc2")->quant.source, "name fc2");
  EXPECT_EQ(wbits("fc3"), 7);   // layer beats name
  EXPECT_EQ(abits("fc3"), 10);  // the layer rule left the activation to the name rule
  EXPECT_EQ(find(plan, "fc3")->quant.source, "layer");

  // quant_aware builds those quanters.
  quant_aware(net, c);
  auto& fc3 = dynamic_cast<QuantedLinear&>(net.child("fc3"));
  EXPECT_EQ(fc3.weight_quanter().bits(), 7);
  EXPECT_EQ(fc3.activation_quanter().bits(), 10);
  EXPECT_EQ(dynamic_cast<QuantedConv2D&>(net.child("conv1")).weight_quanter().bits(), 8);
}

TEST(QuantConfig, DefaultFactoriesAndRulesQuantizeTypesOutsideTheList) {
  models::LeNet5 net;
  QuantSettings s;
  s.quantize_op_types = {"conv2d"};
  QuantConfig c(s);
  c.set_default_weight(QuanterFactory::of("abs_max", QuantRole::Weight, 5));
  c.set_default_activation(QuanterFactory::of("abs_max", QuantRole::Activation, 7));
  c.add_name_config("fc3", {.weight = weight_bits(8)});  // a rule quantizes a Linear although not in the list
  auto plan = plan_quant_aware(net, c);
  EXPECT_EQ(names(plan), (std::vector<std::string>{"conv1", "conv2", "fc3"}));
  EXPECT_EQ(find(plan, "conv1")->quant.weight.type, "abs_max");
  EXPECT_EQ(find(plan, "conv1")->quant.weight.options.bits, 5);
  EXPECT_EQ(find(plan, "fc3")->quant.activation.options.bits, 7);
  expect_error([&] { c.set_default_weight(QuanterFactory::of("abs_max", QuantRole::Activation)); }, {"role"});
  expect_error([&] { c.add_name_config("x", {}); }, {"neither"});
}

TEST(QuantConfig, DepthwiseIsItsOwnType) {
  nn::Sequential net;
  net.push_back(std::make_shared<nn::Conv2D>(4, 4, 3, 1, 1, 1, /*groups=*/4));
  net.push_back(std::make_shared<nn::Conv2D>(4, 8, 1));
  net.push_back(std::make_shared<nn::Conv2D>(4, 8, 3, 1, 1, 1, /*groups=*/2));  // grouped, not depthwise
  EXPECT_EQ(QuantConfig::quant_type_of(net.child("0")), "DepthwiseConv2D");
  EXPECT_EQ(QuantConfig::quant_type_of(net.child("2")), "Conv2D");
  QuantSettings s;
  s.quantize_op_types = {"conv2d"};
  EXPECT_EQ(names(plan_quant_aware(net, QuantConfig(s))), (std::vector<std::string>{"1", "2"}));
  s.quantize_op_types = {"depthwise_conv2d"};
  EXPECT_EQ(names(plan_quant_aware(net, QuantConfig(s))), (std::vector<std::string>{"0"}));
  QuantConfig c;
  c.add_type_config("depthwise_conv2d", {.weight = weight_bits(4)});
  auto plan = plan_quant_aware(net, c);
  EXPECT_EQ(find(plan, "0")->quant.weight.options.bits, 4);
  EXPECT_EQ(find(plan, "1")->quant.weight.options.bits, 8);
}

TEST(QuantConfig, FullQuantizeAndTensorRtExtendTheTypes) {
  auto model = models::create_model("resnet8");
  QuantSettings s;
  s.is_full_quantize = true;
  auto plan = plan_quant_aware(*model, QuantConfig(s));
  auto has = [&](const std::string& n) { return find(plan, n) != nullptr; };
  EXPECT_TRUE(has("relu1"));
  EXPECT_TRUE(has("layers.0.add"));
  EXPECT_TRUE(has("layers.0.relu2"));
  EXPECT_TRUE(has("pool"));
  EXPECT_FALSE(has("bn1"));
  EXPECT_EQ(find(plan, "layers.0.add")->quant_type, "Add");

  QuantSettings t;
  t.for_tensorrt = true;
  plan = plan_quant_aware(*model, QuantConfig(t));
  EXPECT_TRUE(has("layers.0.add"));
  EXPECT_TRUE(has("pool"));
  EXPECT_FALSE(has("relu1"));  // TensorRT's list has leaky_relu, not relu
  EXPECT_TRUE(has("fc"));
}

// ---- skips ----

namespace {
// conv "a", a block registered as "skip_quant_block" holding conv "inner", and conv "b".
struct SkipNet : nn::Module {
  SkipNet() {
    register_module("a", std::make_shared<nn::Conv2D>(1, 2, 3));
    auto block = register_module("skip_quant_block", std::make_shared<nn::Sequential>());
    block->push_back(std::make_shared<nn::Conv2D>(2, 2, 3));
    register_module("b", std::make_shared<nn::Conv2D>(2, 2, 3));
    register_module("head", std::make_shared<nn::Linear>(2, 2));
  }
  std::string type_name() const override { return "SkipNet"; }
};
}  // namespace

TEST(QuantConfig, SkipByPatternAndScope) {
  SkipNet net;
  EXPECT_EQ(names(plan_quant_aware(net, QuantConfig())), (std::vector<std::string>{"a", "b", "head"}));

  QuantConfig c;
  c.skip(&net.child("b"));
  EXPECT_EQ(names(plan_quant_aware(net, c)), (std::vector<std::string>{"a", "head"}));

  QuantSettings s;
  s.not_quant_pattern = {"hea"};  // substring of the dotted name
  EXPECT_EQ(names(plan_quant_aware(net, QuantConfig(s))), (std::vector<std::string>{"a", "skip_quant_block.0", "b"}));

  QuantConfig scope;
  scope.skip(&net);  // the root: everything inside
  EXPECT_TRUE(plan_quant_aware(net, scope).empty());

  // A rule on a skipped module contradicts the skip.
  QuantConfig bad;
  bad.add_name_config("skip_quant_block.0", {.weight = weight_bits(4)});
  expect_error([&] { plan_quant_aware(net, bad); }, {"name rule 'skip_quant_block.0'", "skipped", "not_quant_pattern", "skip_quant"});
  QuantConfig bad_layer;
  bad_layer.skip(&net.child("b"));
  bad_layer.add_layer_config(&net.child("b"), {.weight = weight_bits(4)});
  expect_error([&] { plan_quant_aware(net, bad_layer); }, {"layer rule on 'b'", "QuantConfig::skip"});
}

// ---- rules that match nothing, custom mappings ----

TEST(QuantConfig, RulesThatMatchNothingAreErrors) {
  models::LeNet5 net;
  QuantConfig c;
  c.add_name_config("fc4", {.weight = weight_bits(4)});
  expect_error([&] { quant_aware(net, c); }, {"name rule 'fc4'", "matches no module", "fc3"});
  EXPECT_EQ(net.child("fc1").type_name(), "Linear");  // nothing was replaced

  nn::Linear stranger(2, 2);
  QuantConfig l;
  l.add_layer_config(&stranger, {.weight = weight_bits(4)});
  expect_error([&] { quant_aware(net, l); }, {"layer rule", "Linear", "matches no module"});

  auto resnet = models::create_model("resnet8");
  QuantConfig container;
  container.add_name_config("layers", {.weight = weight_bits(4)});
  expect_error([&] { quant_aware(*resnet, container); }, {"name rule 'layers'", "Sequential", "no QAT mapping"});

  QuantConfig t;
  t.add_type_config("Bilinear", {.weight = weight_bits(4)});
  expect_error([&] { quant_aware(net, t); }, {"type rule 'Bilinear'", "no quantizable type"});
}

TEST(QuantConfig, CustomQatLayerMapping) {
  nn::Sequential net;
  net.push_back(std::make_shared<nn::Conv2D>(1, 2, 3));
  net.push_back(std::make_shared<nn::Identity>());
  QuantConfig c;
  int calls = 0;
  c.add_qat_layer_mapping("Identity", [&](const nn::ModulePtr& layer, const ResolvedQuant& q) {
    ++calls;
    return std::make_shared<QuantedOp>(layer, "Identity", OpQuantPoint::Inputs,
                                       std::vector<QuanterPtr>{q.activation.make()});
  });
  c.add_type_config("Identity", {.activation = act_bits(6)});
  quant_aware(net, c);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(net.child("1").type_name(), "QuantedIdentity");
  EXPECT_EQ(dynamic_cast<QuantedOp&>(net.child("1")).quanter(0).bits(), 6);
  EXPECT_EQ(net.child("0").type_name(), "QuantedConv2D");
}

TEST(QuantConfig, AcceptsObserverFactoriesForPtq) {
  qslim::quant::QuantConfig c;
  c.set_default_activation(qslim::quant::QuanterFactory::of("HistObserver", qslim::quant::QuantRole::Activation));
  EXPECT_EQ(c.default_activation().type, "HistObserver");
  qslim::testing::expect_error(
      [&] {
        c.set_default_activation(
            qslim::quant::QuanterFactory::of("AbsMaxChannelWiseWeightObserver", qslim::quant::QuantRole::Activation));
      },
      {"AbsMaxChannelWiseWeightObserver", "is for weights"});
  qslim::testing::expect_error(
      [&] { qslim::quant::QuanterFactory::of("NoSuchObserver", qslim::quant::QuantRole::Activation); },
      {"unknown quanter type 'NoSuchObserver'", "KLObserver"});
}
