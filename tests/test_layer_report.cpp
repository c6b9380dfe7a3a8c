// Float twins (quant/float_twin.h) and the per-layer report and sensitivity ranking
// (quant/layer_report.h): twins reproduce the float model (also with folded BN), SQNR / cosine /
// MSE against a reference computed here, a deliberately coarse layer ranks worst and most
// sensitive, the model is left bit-identical, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/factory.h"
#include "core/random.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/converted_layers.h"
#include "quant/float_twin.h"
#include "quant/layer_report.h"
#include "quant/qat.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::expect_error;

namespace {

void calibrate(nn::Module& m, const Tensor& x) {
  NoGradGuard no_grad;
  m.train();
  m(x);
  m.eval();
}

Tensor eval_forward(nn::Module& m, const Tensor& x) {
  NoGradGuard no_grad;
  m.eval();
  return m(x);
}

std::shared_ptr<nn::Sequential> three_convs() {
  manual_seed(11);
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2D>(1, 4, 3, 1, 1), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2D>(4, 8, 3, 1, 1), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2D>(8, 8, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(8 * 6 * 6, 5)});
}

// Every layer at 8 bits except conv "2" with 2-bit weights.
QuantConfig coarse_layer_2() {
  QuantConfig c;
  c.add_name_config("2", {.weight = QuanterFactory::of("channel_wise_abs_max", QuantRole::Weight, 2)});
  return c;
}

Tensor input_batch(uint64_t seed) {
  Generator gen(seed);
  return rand({16, 1, 6, 6}, DType::F32, &gen);
}

double mse(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += (va[i] - vb[i]) * (va[i] - vb[i]);
  return s / static_cast<double>(va.size());
}

}  // namespace

TEST(FloatTwins, ReproduceTheFloatModelAndAreCopies) {
  auto net = three_convs();
  const Tensor x = input_batch(1);
  const Tensor ref = eval_forward(*net, x);
  quant_aware(*net, coarse_layer_2());
  calibrate(*net, x);
  const std::string rng = global_generator().state();
  FloatTwins twins = float_twins(*net);
  EXPECT_EQ(global_generator().state(), rng) << "building twins must not consume the global random stream";
  EXPECT_EQ(twins.size(), 4u);
  EXPECT_EQ(twins.at("0")->type_name(), "Conv2D");
  EXPECT_EQ(twins.at("7")->type_name(), "Linear");
  EXPECT_FALSE(twins.at("0")->param("weight").is_same(net->child("0").param("weight")));
  convert(*net);
  for (const auto& [name, twin] : twins) net->replace_submodule(name, twin);
  EXPECT_EQ(mse(eval_forward(*net, x), ref), 0.0);  // same tensors, same ops: bit-identical
}

TEST(FloatTwins, FoldedConvBnTwinIsTheFoldedConv) {
  manual_seed(12);
  auto bn = std::make_shared<nn::BatchNorm2D>(4);
  {
    Generator gen(13);
    NoGradGuard no_grad;
    bn->param("weight").copy_(uniform({4}, 0.5, 1.5, DType::F32, &gen));
    bn->param("bias").copy_(randn({4}, DType::F32, &gen));
    bn->buffer("running_mean").copy_(randn({4}, DType::F32, &gen));
    bn->buffer("running_var").copy_(uniform({4}, 0.5, 2.0, DType::F32, &gen));
  }
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2D>(1, 4, 3, 1, 1, 1, 1, /*bias=*/false), bn, std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2D>(4, 2, 1)});
  const Tensor x = input_batch(2);
  const Tensor ref = eval_forward(*net, x);
  QuantSettings s;
  s.fold_bn = true;
  quant_aware(*net, QuantConfig(s));
  EXPECT_EQ(net->child("0").type_name(), "QuantedConvBN2D");
  FloatTwins twins = float_twins(*net);
  ASSERT_EQ(twins.size(), 2u);
  auto* c0 = dynamic_cast<nn::Conv2D*>(twins.at("0").get());
  ASSERT_NE(c0, nullptr);
  EXPECT_TRUE(c0->has_bias());  // the folded bias
  // Twin model = conv with folded weight/bias, the BN slot an identity after convert.
  auto sequential_twin = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{twins.at("0"), std::make_shared<nn::ReLU>(), twins.at("3")});
  EXPECT_TRUE(AllClose(eval_forward(*sequential_twin, x), ref, 1e-5, 1e-5));
}

TEST(LayerReport, CoarseLayerRanksWorstAndValuesMatchAReference) {
  auto net = three_convs();
  const Tensor x = input_batch(3);
  quant_aware(*net, coarse_layer_2());
  calibrate(*net, x);
  const FloatTwins twins = float_twins(*net);
  convert(*net);

  const auto report = layer_report(*net, twins, x);
  ASSERT_EQ(report.size(), 4u);
  EXPECT_EQ(report[0].name, "2") << format_layer_report(report, {});
  EXPECT_EQ(report[0].type, "Conv2D");
  for (size_t i = 1; i < report.size(); ++i) EXPECT_LE(report[i - 1].sqnr_db, report[i].sqnr_db);

  // Layer "0" sees the model input in both models: compare with its twin directly.
  const auto it = std::find_if(report.begin(), report.end(), [](const LayerError& e) { return e.name == "0"; });
  ASSERT_NE(it, report.end());
  NoGradGuard no_grad;
  const auto yq = net->child("0").forward(x).to_vector<double>(), yf = twins.at("0")->forward(x).to_vector<double>();
  double ff = 0, qq = 0, fq = 0, ee = 0;
  for (size_t i = 0; i < yq.size(); ++i) {
    ff += yf[i] * yf[i];
    qq += yq[i] * yq[i];
    fq += yf[i] * yq[i];
    ee += (yf[i] - yq[i]) * (yf[i] - yq[i]);
  }
  EXPECT_NEAR(it->sqnr_db, 10 * std::log10(ff / ee), 1e-9);
  EXPECT_NEAR(it->cosine, fq / std::sqrt(ff * qq), 1e-12);
  EXPECT_NEAR(it->mse, ee / static_cast<double>(yq.size()), 1e-15);
  EXPECT_GT(it->sqnr_db, report[0].sqnr_db + 10);  // 8 bits against 2

  const std::string md = format_layer_report(report, {});
  EXPECT_NE(md.find("| layer | type | SQNR (dB) | cosine | MSE |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | Conv2D |"), std::string::npos) << md;
}

TEST(LayerReport, SensitivityRanksTheCoarseLayerFirstAndLeavesTheModelUnchanged) {
  auto net = three_convs();
  const Tensor x = input_batch(4);
  const Tensor ref = eval_forward(*net, x);
  quant_aware(*net, coarse_layer_2());
  calibrate(*net, x);
  const FloatTwins twins = float_twins(*net);
  convert(*net);

  const Tensor before = eval_forward(*net, x);
  const nn::NamedTensors state_before = net->state_dict();
  std::map<std::string, nn::Module*> modules_before;
  for (const auto& [n, m] : net->named_modules()) modules_before[n] = m.get();
  net->train();
  net->child("7").eval();  // mixed modes must come back as they were

  // A metric that is 0 for the float model and falls with the output error.
  int calls = 0;
  auto evaluate = [&](nn::Module& m) {
    ++calls;
    return -1000.0 * mse(m(x), ref);
  };
  double float_metric = std::numeric_limits<double>::quiet_NaN();
  const auto ranking = sensitivity_ranking(*net, twins, evaluate, &float_metric);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(float_metric, 0.0);  // all twins: exactly the float model
  ASSERT_EQ(ranking.size(), 4u);
  EXPECT_EQ(ranking[0].name, "2");
  for (size_t i = 0; i < ranking.size(); ++i) {
    EXPECT_DOUBLE_EQ(ranking[i].drop, float_metric - ranking[i].metric);
    if (i) {
      EXPECT_GE(ranking[i - 1].drop, ranking[i].drop);
    }
  }
  EXPECT_GT(ranking[0].drop, 10 * ranking[1].drop);
  const auto report = layer_report(*net, twins, x);

  EXPECT_TRUE(net->is_training());
  EXPECT_TRUE(net->child("2").is_training());
  EXPECT_FALSE(net->child("7").is_training());
  for (const auto& [n, m] : net->named_modules()) EXPECT_EQ(modules_before.at(n), m.get()) << n;
  const nn::NamedTensors state_after = net->state_dict();
  ASSERT_EQ(state_after.size(), state_before.size());
  for (size_t i = 0; i < state_after.size(); ++i) {
    EXPECT_EQ(state_after[i].first, state_before[i].first);
    EXPECT_EQ(state_after[i].second.to_vector<double>(), state_before[i].second.to_vector<double>());
  }
  const Tensor after = eval_forward(*net, x);
  EXPECT_EQ(before.to_vector<float>(), after.to_vector<float>());

  const std::string md = format_layer_report(report, ranking);
  EXPECT_NE(md.find("| 1 | 2 |"), std::string::npos) << md;
}

TEST(LayerReport, QuantizedOpsAreReported) {
  auto net = three_convs();
  const Tensor x = input_batch(5);
  QuantSettings s;
  s.is_full_quantize = true;
  quant_aware(*net, QuantConfig(s));
  calibrate(*net, x);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  const auto report = layer_report(*net, twins, x);
  int relus = 0;
  for (const auto& e : report) {
    relus += e.type == "ReLU";
    EXPECT_TRUE(std::isfinite(e.sqnr_db) && e.sqnr_db > 10) << e.name << " " << e.sqnr_db;
    EXPECT_GT(e.cosine, 0.9) << e.name;
  }
  EXPECT_EQ(relus, 3);
}

TEST(LayerReport, Errors) {
  auto net = three_convs();
  const Tensor x = input_batch(6);
  auto evaluate = [](nn::Module&) { return 0.0; };
  expect_error([&] { layer_report(*net, FloatTwins{}, x); }, {"layer_report", "no converted layer"});
  expect_error([&] { sensitivity_ranking(*net, FloatTwins{}, evaluate); }, {"sensitivity_ranking", "no converted layer"});
  quant_aware(*net, QuantConfig());
  calibrate(*net, x);
  FloatTwins twins = float_twins(*net);
  convert(*net);
  expect_error([&] { layer_report(*net, twins, Tensor()); }, {"layer_report", "undefined"});
  expect_error([&] { layer_report(*net, twins, zeros({0, 1, 6, 6})); }, {"layer_report", "non-empty"});
  twins.erase("4");
  expect_error([&] { layer_report(*net, twins, x); }, {"no float twin", "'4'"});
  expect_error([&] { sensitivity_ranking(*net, twins, evaluate); }, {"no float twin", "'4'"});
  expect_error([&] { sensitivity_ranking(*net, twins, nullptr); }, {"sensitivity_ranking", "evaluate"});
}
