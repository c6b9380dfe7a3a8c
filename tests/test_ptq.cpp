// Post-training static quantization: PTQ (observers, BN fold, calibration in eval mode, convert)
// and the quant_post_static driver (algos, W4A8, cache, errors, atomic output, stages).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops_activation.h"
#include "autograd/ops_conv.h"
#include "core/factory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "data/fashion_mnist.h"
#include "data/transforms.h"
#include "models/registry.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/calibration_cache.h"
#include "quant/conv_bn_fold.h"
#include "quant/converted_layers.h"
#include "quant/ptq.h"
#include "quant/quant_post_static.h"
#include "quant/quantized_io.h"
#include "tests/support/test_support.h"
#include "train/config.h"
#include "train/trainer.h"

using namespace qslim;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_ptq_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<Tensor> random_batches(int n, int64_t batch, uint64_t seed, const Shape& image = {1, 28, 28}) {
  Generator gen(seed);
  std::vector<Tensor> out;
  Shape shape = {batch};
  shape.insert(shape.end(), image.begin(), image.end());
  for (int i = 0; i < n; ++i) out.push_back(randn(shape, DType::F32, &gen));
  return out;
}

nn::ModulePtr lenet(uint64_t seed) {
  manual_seed(seed);
  return models::create_model("lenet");
}

Tensor run(nn::Module& m, const Tensor& x) {
  NoGradGuard g;
  m.eval();
  return m(x);
}

using qslim::testing::error_of;

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// max |a - b| / max |b|
double rel_err(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<float>(), vb = b.to_vector<float>();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(va[i]) - vb[i]));
    den = std::max(den, std::abs(static_cast<double>(vb[i])));
  }
  return num / den;
}

quant::QuantPostStaticOptions small_options(const std::string& algo = "hist") {
  quant::QuantPostStaticOptions o;
  o.algo = algo;
  o.batch_size = 8;
  o.batch_nums = 3;
  return o;
}

json layers_of(const std::string& file) { return json::parse(quant::converted_metadata(file).at("layers")); }

}  // namespace

// ---------------------------------------------------------------- BN fold and PTQ class

// conv(3->6) + BatchNorm2D + ReLU with non-trivial running statistics and affine parameters.
struct ConvBnNet {
  std::shared_ptr<nn::Sequential> model;
  std::shared_ptr<nn::Conv2D> conv;
  std::shared_ptr<nn::BatchNorm2D> bn;
};

ConvBnNet conv_bn_net() {
  manual_seed(5);
  ConvBnNet n;
  n.conv = std::make_shared<nn::Conv2D>(3, 6, 3, 1, 1);
  n.bn = std::make_shared<nn::BatchNorm2D>(6);
  n.model = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{n.conv, n.bn, std::make_shared<nn::ReLU>()});
  Generator g(9);
  n.bn->param("weight").copy_(uniform({6}, 0.5, 1.5, DType::F32, &g));
  n.bn->param("bias").copy_(uniform({6}, -0.5, 0.5, DType::F32, &g));
  n.bn->buffer("running_mean").copy_(uniform({6}, -0.3, 0.3, DType::F32, &g));
  n.bn->buffer("running_var").copy_(uniform({6}, 0.2, 2.0, DType::F32, &g));
  return n;
}

// The reference fold written from the formula: W' = W f, b' = beta + (b - mu) f, f = gamma / sqrt(var + eps).
void reference_fold(const ConvBnNet& n, Tensor& w_folded, Tensor& b_folded) {
  auto w = n.conv->weight().to_vector<float>(), b = n.conv->bias().to_vector<float>();
  auto gamma = n.bn->param("weight").to_vector<float>(), beta = n.bn->param("bias").to_vector<float>();
  auto mu = n.bn->buffer("running_mean").to_vector<float>(), var = n.bn->buffer("running_var").to_vector<float>();
  const size_t per = w.size() / 6;
  std::vector<float> bf(6);
  for (size_t c = 0; c < 6; ++c) {
    const double f = gamma[c] / std::sqrt(static_cast<double>(var[c]) + n.bn->eps());
    for (size_t i = 0; i < per; ++i) w[c * per + i] = static_cast<float>(w[c * per + i] * f);
    bf[c] = static_cast<float>(beta[c] + (b[c] - mu[c]) * f);
  }
  w_folded = from_vector(w, n.conv->weight().shape());
  b_folded = from_vector(bf, {6});
}

// Per output channel symmetric fake quantization on the narrow grid, round half to even.
Tensor fake_quant_per_channel(const Tensor& w, int bits) {
  auto v = w.to_vector<float>();
  const int64_t c = w.size(0);
  const size_t per = v.size() / static_cast<size_t>(c);
  const double qmax = std::pow(2.0, bits - 1) - 1;
  for (int64_t ch = 0; ch < c; ++ch) {
    double t = 0;
    for (size_t i = 0; i < per; ++i) t = std::max(t, std::abs(static_cast<double>(v[ch * per + i])));
    const float s = static_cast<float>(t / qmax);
    for (size_t i = 0; i < per; ++i) {
      float& x = v[ch * per + i];
      x = static_cast<float>(std::clamp<double>(std::nearbyint(x / s), -qmax, qmax)) * s;
    }
  }
  return from_vector(v, w.shape());
}

TEST(Ptq, BnFoldInEvalModeEqualsConvThenBatchNorm) {
  ConvBnNet n = conv_bn_net();
  Tensor x = randn({4, 3, 8, 8});
  // BatchNorm in eval mode from the formula, on the float conv.
  Tensor conv_out = run(*n.conv, x);
  auto z = conv_out.to_vector<float>();
  auto gamma = n.bn->param("weight").to_vector<float>(), beta = n.bn->param("bias").to_vector<float>();
  auto mu = n.bn->buffer("running_mean").to_vector<float>(), var = n.bn->buffer("running_var").to_vector<float>();
  for (size_t i = 0; i < z.size(); ++i) {
    const size_t c = (i / 64) % 6;
    z[i] = std::max(0.0f, static_cast<float>(gamma[c] * (z[i] - mu[c]) / std::sqrt(var[c] + 1e-5) + beta[c]));
  }
  Tensor y_bn = from_vector(z, conv_out.shape());
  Tensor w_folded, b_folded;
  reference_fold(n, w_folded, b_folded);
  // The fold itself is exact (float rounding only).
  EXPECT_LT(rel_err(relu(conv2d(x, w_folded, b_folded, n.conv->conv_params())), y_bn), 1e-5);
  const std::vector<float> running_mean = n.bn->buffer("running_mean").to_vector<float>();

  quant::PtqOptions o;
  o.algo = "abs_max";
  quant::PTQ ptq(o);
  n.model->train();  // quantize switches to eval mode
  auto plan = ptq.quantize(*n.model);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].folded_bn, "1");
  EXPECT_FALSE(n.model->is_training());
  auto* folded = dynamic_cast<quant::QuantedConvBN2D*>(n.model->get_submodule("0").get());
  ASSERT_NE(folded, nullptr) << n.model->to_string();
  // Calibration forward: the activation observer passes x through; the weight is the folded one,
  // fake-quantized per channel with 8 bits; BatchNorm uses its running statistics.
  Tensor y = ptq.calibrate(*n.model, x);
  Tensor y_ref = relu(conv2d(x, fake_quant_per_channel(w_folded, 8), b_folded, n.conv->conv_params()));
  EXPECT_TRUE(qslim::testing::AllClose(y, y_ref, 1e-5, 1e-5));
  EXPECT_LT(rel_err(y, y_bn), 0.02);  // 8-bit weights: close to, not equal to, conv + BN
  EXPECT_EQ(n.bn->buffer("running_mean").to_vector<float>(), running_mean) << "calibration updated BN statistics";

  // Converted: the folded conv stands where conv + BN stood (the BN slot is an Identity).
  ptq.convert(*n.model);
  EXPECT_EQ(n.model->get_submodule("0")->type_name(), "ConvertedConv2D");
  EXPECT_EQ(n.model->get_submodule("1")->type_name(), "Identity");
  EXPECT_LT(rel_err(run(*n.model, x), y_bn), 0.03);
}

TEST(Ptq, SixteenBitFoldIsConvPlusBatchNorm) {
  ConvBnNet n = conv_bn_net();
  Tensor x = randn({2, 3, 8, 8});
  Tensor y_float = run(*n.model, x);
  quant::PtqOptions o;
  o.algo = "abs_max";
  o.weight_bits = 16;
  o.activation_bits = 16;
  quant::PTQ ptq(o);
  ptq.quantize(*n.model);
  ptq.calibrate(*n.model, x);
  ptq.convert(*n.model);
  EXPECT_LT(rel_err(run(*n.model, x), y_float), 2e-4);
}

TEST(Ptq, QuantizePutsTheAlgoObserversInPlace) {
  auto model = lenet(1);
  quant::PtqOptions o;
  o.algo = "kl";  // case-insensitive
  o.weight_quantize_type = "mse";
  quant::PTQ ptq(o);
  EXPECT_EQ(ptq.activation_observer(), "KLObserver");
  auto plan = ptq.quantize(*model);
  ASSERT_EQ(plan.size(), 5u);
  auto obs = quant::observers_of(*model);
  std::vector<std::string> names;
  for (auto& [name, o2] : obs) names.push_back(name + ":" + o2->type_name());
  ASSERT_EQ(obs.size(), 10u) << ::testing::PrintToString(names);
  EXPECT_EQ(obs[0].first, "conv1.weight_quanter");
  EXPECT_EQ(obs[1].first, "conv1.activation_quanter");
  EXPECT_EQ(obs[0].second->role(), quant::QuantRole::Weight);
  EXPECT_EQ(obs[1].second->role(), quant::QuantRole::Activation);
  for (auto& [name, o2] : obs) EXPECT_FALSE(name.find("activation") != std::string::npos && o2->finalized()) << name;
  for (const Tensor& b : random_batches(2, 4, 3)) ptq.calibrate(*model, b);
  EXPECT_EQ(obs[1].second->batches_seen(), 2);
  ptq.finalize(*model);
  for (auto& [name, o2] : obs) EXPECT_TRUE(o2->finalized()) << name;
  ptq.convert(*model);
  EXPECT_TRUE(quant::observers_of(*model).empty());
  EXPECT_EQ(model->get_submodule("fc3")->type_name(), "ConvertedLinear");
}

// A network whose forward skips one of its layers.
class Unreached : public nn::Module {
 public:
  Unreached() {
    register_module("used", std::make_shared<nn::Linear>(4, 3));
    register_module("unused", std::make_shared<nn::Linear>(3, 2));
  }
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override { return child("used")(x); }
  std::string type_name() const override { return "Unreached"; }
};

TEST(Ptq, FinalizeNamesObserversThatSawNoBatch) {
  Unreached m;
  quant::PTQ ptq;
  ptq.quantize(m);
  ptq.calibrate(m, randn({2, 4}));
  std::string e = error_of([&] { ptq.finalize(m); });
  EXPECT_HAS(e, "unused.activation_quanter");
  EXPECT_HAS(e, "saw no calibration batch");
  EXPECT_HAS(e, "PTQ: 1 observer(s)");
  Unreached fresh;
  EXPECT_HAS(error_of([&] { quant::PTQ().finalize(fresh); }), "holds no observer");
}

TEST(Ptq, BadOptionsAndNothingQuantizable) {
  quant::PtqOptions o;
  o.algo = "minmax";
  std::string e = error_of([&] { quant::PTQ p(o); });
  EXPECT_HAS(e, "unknown algo 'minmax'");
  EXPECT_HAS(e, "KL");
  o = {};
  o.weight_quantize_type = "lsq";
  EXPECT_HAS(error_of([&] { quant::PTQ p(o); }), "unknown weight_quantize_type 'lsq'");
  o = {};
  o.weight_bits = 1;
  EXPECT_HAS(error_of([&] { quant::PTQ p(o); }), "weight_bits");
  nn::Sequential relu_only({std::make_shared<nn::ReLU>()});
  e = error_of([&] { quant::PTQ().quantize(relu_only); });
  EXPECT_HAS(e, "nothing to quantize");
  EXPECT_HAS(e, "Conv2D, DepthwiseConv2D, Linear");
}

TEST(Ptq, FullQuantizeObservesWeightlessOps) {
  auto model = lenet(2);
  quant::PtqOptions o;
  o.is_full_quantize = true;
  quant::PTQ ptq(o);
  auto plan = ptq.quantize(*model);
  EXPECT_GT(plan.size(), 5u);
  for (const Tensor& b : random_batches(2, 4, 8)) ptq.calibrate(*model, b);
  ptq.convert(*model);
  int ops = 0;
  for (auto& [name, m] : model->named_modules()) ops += m->type_name() == "ConvertedOp";
  EXPECT_GT(ops, 0);
}

// ---------------------------------------------------------------- quant_post_static

TEST(QuantPostStatic, SaveLoadGivesIdenticalOutputsAndTimings) {
  fs::path d = temp_dir("roundtrip");
  auto model = lenet(3);
  Tensor x = randn({5, 1, 28, 28});
  Tensor y_float = run(*model, x);
  auto o = small_options("hist");
  o.measure_overhead = true;
  std::vector<std::string> stages;
  o.progress = [&](const std::string& s, int64_t done, int64_t total) {
    if (done == total) stages.push_back(s);
  };
  const std::string out = (d / "sub" / "model_int8.safetensors").string();
  auto r = quant::quant_post_static(model, "lenet", {.batches = random_batches(4, 8, 1)}, out, o);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_EQ(r.batches, 3);
  EXPECT_EQ(r.samples, 24);
  EXPECT_EQ(r.layers.size(), 5u);
  EXPECT_EQ(stages, (std::vector<std::string>{"plain forward", "calibrate"}));
  EXPECT_GT(r.timings.calibrate, 0);
  EXPECT_GT(r.timings.plain_forward, 0);
  EXPECT_GT(r.timings.calibration_overhead(), 0);
  EXPECT_GE(r.timings.total, r.timings.calibrate + r.timings.plain_forward + r.timings.save);
  Tensor y_int8 = run(*r.model, x);
  auto loaded = quant::load_converted(out);
  EXPECT_EQ(run(*loaded, x).to_vector<float>(), y_int8.to_vector<float>());
  EXPECT_LT(rel_err(y_int8, y_float), 0.1);
  EXPECT_GT(rel_err(y_int8, y_float), 0);
  auto meta = quant::converted_metadata(out);
  EXPECT_EQ(meta.at("model"), "lenet");
  fs::remove_all(d);
}

TEST(QuantPostStatic, W4A8IsRecordedAndRoundTrips) {
  fs::path d = temp_dir("w4a8");
  auto model = lenet(4);
  auto o = small_options("abs_max");
  o.weight_bits = 4;
  o.activation_bits = 8;
  const std::string out = (d / "w4a8.safetensors").string();
  auto r = quant::quant_post_static(model, "lenet", {.batches = random_batches(3, 8, 2)}, out, o);
  json layers = layers_of(out);
  ASSERT_EQ(layers.size(), 5u);
  for (const json& l : layers) {
    EXPECT_EQ(l["quant"]["weight"]["bits"], 4) << l.dump();
    EXPECT_EQ(l["quant"]["input"]["bits"], 8) << l.dump();
  }
  json config = json::parse(quant::converted_metadata(out).at("quant_config"));
  EXPECT_EQ(config["weight_bits"], 4);
  EXPECT_EQ(config["activation_bits"], 8);
  auto file = nn::load_tensors(out);
  for (const auto& [name, t] : file.tensors) {
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
    for (int8_t q : t.to_vector<int8_t>()) {
      ASSERT_GE(q, -7) << name;
      ASSERT_LE(q, 7) << name;
    }
  }
  Tensor x = randn({3, 1, 28, 28});
  EXPECT_EQ(run(*quant::load_converted(out), x).to_vector<float>(), run(*r.model, x).to_vector<float>());
  fs::remove_all(d);
}

TEST(QuantPostStatic, EveryAlgoAndWeightTypeRunsEndToEnd) {
  fs::path d = temp_dir("algos");
  const auto batches = random_batches(2, 8, 5);
  Tensor x = randn({4, 1, 28, 28});
  std::vector<std::string> algos = quant::ptq_algos();
  ASSERT_GE(algos.size(), 6u);
  std::map<std::string, double> input_steps;
  for (const std::string& algo : algos) {
    SCOPED_TRACE(algo);
    auto model = lenet(6);
    Tensor y_float = run(*model, x);
    auto o = small_options(algo);
    o.batch_nums = 2;
    const std::string out = (d / (algo + ".safetensors")).string();
    auto r = quant::quant_post_static(model, "lenet", {.batches = batches}, out, o);
    auto loaded = quant::load_converted(out);
    Tensor y = run(*loaded, x);
    EXPECT_EQ(y.to_vector<float>(), run(*r.model, x).to_vector<float>());
    EXPECT_LT(rel_err(y, y_float), 0.2);
    input_steps[algo] = layers_of(out)[0]["quant"]["input"]["s"].get<double>();
  }
  // The first layer sees the raw N(0,1) input: abs_max takes its max, the clipping algos less.
  EXPECT_LT(input_steps.at("hist"), input_steps.at("abs_max"));
  EXPECT_LT(input_steps.at("avg"), input_steps.at("abs_max"));
  EXPECT_LE(input_steps.at("mse"), input_steps.at("abs_max"));
  for (const std::string wt : {"abs_max", "mse"}) {
    SCOPED_TRACE(wt);
    auto model = lenet(6);
    Tensor y_float = run(*model, x);
    auto o = small_options("abs_max");
    o.batch_nums = 2;
    o.weight_quantize_type = wt;
    const std::string out = (d / ("w_" + wt + ".safetensors")).string();
    auto r = quant::quant_post_static(model, "lenet", {.batches = batches}, out, o);
    json w = layers_of(out)[0]["quant"]["weight"];
    EXPECT_EQ(w["axis"], wt == "abs_max" ? -1 : 0) << w.dump();
    EXPECT_EQ(run(*quant::load_converted(out), x).to_vector<float>(), run(*r.model, x).to_vector<float>());
    EXPECT_LT(rel_err(run(*r.model, x), y_float), 0.2);
  }
  fs::remove_all(d);
}

TEST(QuantPostStatic, ClearErrorsAndNoOutputFile) {
  fs::path d = temp_dir("errors");
  const std::string out = (d / "model_int8.safetensors").string();
  auto batches = random_batches(3, 8, 7);
  auto expect_error = [&](const quant::QuantPostStaticOptions& o, const quant::CalibrationData& data,
                          const std::string& part) {
    auto model = lenet(8);
    std::string e = error_of([&] { quant::quant_post_static(model, "lenet", data, out, o); });
    EXPECT_HAS(e, part);
    EXPECT_FALSE(fs::exists(out)) << part;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << part;
  };
  auto o = small_options();
  o.batch_nums = 4;
  expect_error(o, {.batches = batches}, "batch_nums 4 is larger than the calibration data: 3 batches were given");
  expect_error(small_options(), {}, "the calibration set is empty");
  o = small_options();
  o.algo = "percentile";
  expect_error(o, {.batches = batches}, "unknown algo 'percentile'");
  o = small_options();
  o.quantizable_op_type = {"Add"};  // LeNet has none
  expect_error(o, {.batches = batches}, "nothing to quantize");
  o = small_options();
  o.batch_size = 16;
  expect_error(o, {.batches = batches}, "calibration batch 0 holds 8 samples but batch_size is 16");
  o = small_options();
  o.round_type = "stochastic";
  expect_error(o, {.batches = batches}, "unknown round_type 'stochastic'");
  // A cache directory below a regular file cannot be created, whoever runs the test.
  std::ofstream(d / "plain_file") << "x";
  o = small_options();
  o.is_use_cache_file = true;
  o.cache_dir = (d / "plain_file" / "cache").string();
  expect_error(o, {.batches = batches, .cache_key = "k"}, "cache_dir " + o.cache_dir);
  o.cache_dir = (d / "cache").string();
  expect_error(o, {.batches = batches}, "cache_key");
  // A loader over an empty dataset, and more batches than the loader makes.
  auto empty = std::make_shared<data::TensorDataset>(zeros({0, 1, 28, 28}, DType::U8), zeros({0}, DType::I64));
  expect_error(small_options(), {.loader = std::make_shared<data::DataLoader>(empty, data::DataLoaderOptions{.batch_size = 8})},
               "the calibration set is empty");
  auto few = std::make_shared<data::TensorDataset>(zeros({20, 1, 28, 28}, DType::U8), zeros({20}, DType::I64));
  o = small_options();
  o.batch_nums = 4;
  expect_error(o, {.loader = std::make_shared<data::DataLoader>(few, data::DataLoaderOptions{.batch_size = 8})},
               "batch_nums 4 is larger than the calibration data: the data loader makes 3 batches of 8 (20 samples)");
  fs::remove_all(d);
}

TEST(QuantPostStatic, StageFailingAfterCalibrationWritesNothing) {
  fs::path d = temp_dir("late");
  const std::string out = (d / "model_int8.safetensors").string();
  // finalize fails: a layer the forward never reaches.
  {
    auto m = std::make_shared<Unreached>();
    auto o = small_options();
    o.batch_nums = 2;
    std::string e = error_of([&] {
      quant::quant_post_static(m, "lenet", {.batches = random_batches(2, 8, 1, {4})}, out, o);
    });
    EXPECT_HAS(e, "unused.activation_quanter");
    EXPECT_FALSE(fs::exists(out));
  }
  // The report's evaluate function fails after conversion.
  {
    auto o = small_options();
    o.report = true;
    o.evaluate = [](nn::Module&) -> double { throw Error("evaluation data went missing"); };
    std::string e = error_of([&] {
      quant::quant_post_static(lenet(9), "lenet", {.batches = random_batches(3, 8, 1)}, out, o);
    });
    EXPECT_HAS(e, "evaluation data went missing");
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
  }
  fs::remove_all(d);
}

TEST(QuantPostStatic, CacheFileIsReusedAndGivesIdenticalResults) {
  fs::path d = temp_dir("cache");
  auto o = small_options("KL");
  o.is_use_cache_file = true;
  o.cache_dir = (d / "cache").string();
  Tensor x = randn({4, 1, 28, 28});
  auto first = quant::quant_post_static(lenet(10), "lenet", {.batches = random_batches(3, 8, 11), .cache_key = "A"},
                                        (d / "a.safetensors").string(), o);
  EXPECT_FALSE(first.cache_hit);
  ASSERT_TRUE(fs::exists(first.cache_file));
  EXPECT_EQ(fs::path(first.cache_file).parent_path(), fs::path(o.cache_dir));
  // The cache is a safetensors file of the batches.
  auto cached = nn::load_tensors(first.cache_file);
  EXPECT_EQ(cached.metadata.at("format"), quant::kCalibrationCacheFormat);
  ASSERT_EQ(cached.tensors.size(), 3u);
  EXPECT_EQ(cached.tensors[2].second.to_vector<float>(), random_batches(3, 8, 11)[2].to_vector<float>());
  // Same key and settings: the cached batches are used, not the (different) ones given.
  auto second = quant::quant_post_static(lenet(10), "lenet", {.batches = random_batches(3, 8, 99), .cache_key = "A"},
                                         (d / "b.safetensors").string(), o);
  EXPECT_TRUE(second.cache_hit);
  EXPECT_EQ(second.cache_file, first.cache_file);
  EXPECT_EQ(run(*second.model, x).to_vector<float>(), run(*first.model, x).to_vector<float>());
  EXPECT_EQ(nn::load_tensors((d / "a.safetensors").string()).metadata.at("layers"),
            nn::load_tensors((d / "b.safetensors").string()).metadata.at("layers"));
  // Another batch_nums or key: a new cache file.
  o.batch_nums = 2;
  auto third = quant::quant_post_static(lenet(10), "lenet", {.batches = random_batches(3, 8, 11), .cache_key = "A"},
                                        (d / "c.safetensors").string(), o);
  EXPECT_FALSE(third.cache_hit);
  EXPECT_NE(third.cache_file, first.cache_file);
  fs::remove_all(d);
}

TEST(QuantPostStatic, CheckpointInputAndLoaderReplay) {
  fs::path d = temp_dir("ckpt");
  auto model = lenet(12);
  const std::string ckpt = (d / "model.safetensors").string();
  nn::save_module(ckpt, *model, {{"model", "lenet"}});
  // A loader: its batches are what calibration sees, replayed identically for the overhead pass.
  Generator g(3);
  auto ds = std::make_shared<data::TensorDataset>(randint(0, 256, {40, 1, 28, 28}, DType::I64, &g).to(DType::U8),
                                                  zeros({40}, DType::I64));
  data::DataLoaderOptions lo{.batch_size = 8, .shuffle = true, .seed = 4};
  lo.transform = std::make_shared<data::Normalize>(std::vector<float>{0.5f}, std::vector<float>{0.25f});
  auto o = small_options("avg");
  o.measure_overhead = true;
  auto r = quant::quant_post_static(ckpt, {.loader = std::make_shared<data::DataLoader>(ds, lo)},
                                    (d / "int8.safetensors").string(), o);
  EXPECT_EQ(r.samples, 24);
  EXPECT_EQ(r.model_spec, "lenet");
  // The same calibration from the list of those batches gives the same file.
  data::DataLoader same(ds, lo);
  std::vector<Tensor> batches;
  for (auto& b : same) {
    if (batches.size() == 3) break;
    batches.push_back(b.images.clone());
  }
  auto r2 = quant::quant_post_static(lenet(12), "lenet", {.batches = batches}, (d / "int8b.safetensors").string(),
                                     small_options("avg"));
  EXPECT_EQ(layers_of((d / "int8.safetensors").string()), layers_of((d / "int8b.safetensors").string()));
  // A converted file is not an FP32 checkpoint.
  EXPECT_HAS(error_of([&] {
               quant::quant_post_static((d / "int8.safetensors").string(), {.batches = batches},
                                        (d / "x.safetensors").string(), small_options());
             }),
             "already a converted");
  EXPECT_HAS(error_of([&] {
               quant::quant_post_static((d / "none.safetensors").string(), {.batches = batches},
                                        (d / "x.safetensors").string(), small_options());
             }),
             "none.safetensors does not exist");
  fs::remove_all(d);
}

TEST(QuantPostStatic, BiasCorrectionAdaRoundReportAndKeepFp32) {
  fs::path d = temp_dir("extras");
  Tensor x = randn({4, 1, 28, 28});
  auto reference = lenet(13);
  Tensor y_float = run(*reference, x);
  auto o = small_options("abs_max");
  o.weight_bits = 4;  // coarse enough for the extras to matter
  o.bias_correction = true;
  o.round_type = "adaround";
  o.adaround.iterations = 20;
  o.adaround.batch_size = 8;
  o.report = true;
  o.keep_fp32_layers = 1;
  // Metric: minus the output error against the float model on x (higher is better).
  o.evaluate = [&](nn::Module& m) { return -rel_err(run(m, x), y_float); };
  const std::string out = (d / "int8.safetensors").string();
  auto r = quant::quant_post_static(lenet(13), "lenet", {.batches = random_batches(3, 8, 14)}, out, o);
  EXPECT_EQ(r.layer_errors.size(), 5u);
  ASSERT_EQ(r.sensitivity.size(), 5u);
  ASSERT_EQ(r.kept_fp32.size(), 1u);
  EXPECT_EQ(r.kept_fp32[0], r.sensitivity[0].name);
  EXPECT_EQ(r.layers.size(), 4u);
  EXPECT_FALSE(r.adaround.empty());
  EXPECT_FALSE(r.bias_correction.empty());
  EXPECT_GT(r.timings.keep_fp32, 0);
  EXPECT_GT(r.timings.adaround, 0);
  auto loaded = quant::load_converted(out);
  const std::string kept_type = loaded->get_submodule(r.kept_fp32[0])->type_name();
  EXPECT_TRUE(kept_type == "Conv2D" || kept_type == "Linear") << kept_type;
  EXPECT_EQ(layers_of(out).size(), 4u);
  EXPECT_EQ(run(*loaded, x).to_vector<float>(), run(*r.model, x).to_vector<float>());
  fs::remove_all(d);
}

// LeNet trained briefly on a Fashion-MNIST slice: the INT8 model is as accurate as the float one.
TEST(QuantPostStatic, TrainedLenetKeepsItsAccuracy) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  auto train_set = data::load_fashion_mnist(true, "", 4096);
  auto test_set = data::load_fashion_mnist(false, "", 1000);
  auto model = lenet(15);
  train::TrainConfig c;
  c.epochs = 1;
  c.batch_size = 32;
  c.augment = false;
  train::fit(*model, train_set, test_set, c);
  const double fp32 = train::evaluate(*model, test_set, c.mean, c.std).top1;
  ASSERT_GT(fp32, 60.0);
  data::DataLoaderOptions lo{.batch_size = 16};
  lo.transform = std::make_shared<data::Normalize>(c.mean, c.std);
  fs::path d = temp_dir("trained");
  // Every algo but KL with TensorRT's search start, which on LeNet's sparse post-ReLU inputs cuts
  // fc1's input at 0.95 of a 7.7 range (-6 points); it is run with PaddleSlim's start instead.
  for (const std::string algo : {"abs_max", "avg", "hist", "mse", "emd", "KL"}) {
    auto copy = models::create_model("lenet");
    copy->load_state_dict(model->state_dict());
    quant::QuantPostStaticOptions o;
    o.algo = algo;
    o.batch_nums = 8;
    o.observer.kl_start = quant::KlStart::Paddle;
    const std::string out = (d / (algo + ".safetensors")).string();
    quant::quant_post_static(copy, "lenet", {.loader = std::make_shared<data::DataLoader>(train_set, lo)}, out, o);
    const double int8 = train::evaluate(*quant::load_converted(out), test_set, c.mean, c.std).top1;
    EXPECT_NEAR(int8, fp32, 1.0) << algo << ": FP32 " << fp32 << "% INT8 " << int8 << "%";
  }
  fs::remove_all(d);
}
