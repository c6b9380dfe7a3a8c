// Data-driven bias correction (quant/bias_correction.h): the correction of a layer whose
// quantization error has a known per-channel mean, against a naive reference; layers corrected in
// execution order (a second pass finds nothing left to correct); layers without bias reported
// and left alone; Paddle's weight-statistics variant; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/factory.h"
#include "core/random.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/bias_correction.h"
#include "quant/converted_layers.h"
#include "quant/float_twin.h"
#include "quant/qat.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;

using qslim::testing::expect_error;

namespace {

void calibrate(nn::Module& m, const std::vector<Tensor>& batches) {
  NoGradGuard no_grad;
  m.train();
  for (const Tensor& b : batches) m(b);
  m.eval();
}

QuantConfig with_weight_bits(int bits) {
  QuantSettings s;
  s.weight_bits = bits;
  return QuantConfig(s);
}

// q = clamp(rint(v * (1/s)), lo, hi) * s in f32, as QUANT_SPEC §1 writes it.
float fq(float v, float s, float lo, float hi) { return std::min(std::max(std::nearbyint(v * (1.0f / s)), lo), hi) * s; }

}  // namespace

// Inputs with a large mean make the weight rounding error show as a per-channel output shift:
// E[W x - Wq xq]_j = sum_k (W - Wq)_jk E[x_k] + (input rounding), computed here from scratch.
TEST(BiasCorrection, LinearLayerMatchesHandComputedMeanError) {
  manual_seed(1);
  const int64_t in = 5, out = 3;
  auto net = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Linear>(in, out)});
  Generator gen(2);
  std::vector<Tensor> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(randn({16, in}, DType::F32, &gen) * 0.2 + 2.0);
  quant_aware(*net, with_weight_bits(3));
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  auto& layer = dynamic_cast<ConvertedLinear&>(net->child("0"));

  const std::vector<float> w = twins.at("0")->param("weight").to_vector<float>();
  const std::vector<float> sw = layer.buffer("weight_scale").to_vector<float>();
  const float sx = layer.buffer("input_scale").item<float>();
  const std::vector<float> bias_before = layer.buffer("bias").to_vector<float>();
  std::vector<double> want(out, 0.0);
  int64_t rows = 0;
  for (const Tensor& b : batches) {
    const std::vector<float> x = b.to_vector<float>();
    for (int64_t n = 0; n < b.size(0); ++n, ++rows)
      for (int64_t j = 0; j < out; ++j)
        for (int64_t k = 0; k < in; ++k) {
          const float wjk = w[j * in + k], xk = x[n * in + k];
          want[j] += double(wjk) * xk - double(fq(wjk, sw[j], -3, 3)) * fq(xk, sx, -128, 127);
        }
  }
  double mean_abs = 0;
  for (double& v : want) mean_abs += std::abs(v /= static_cast<double>(rows)) / out;
  ASSERT_GT(mean_abs, 1e-3) << "the constructed layer should have a visible mean error";

  const auto report = bias_correction(*net, twins, batches);
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].name, "0");
  EXPECT_TRUE(report[0].corrected);
  EXPECT_NEAR(report[0].mean_abs_correction, mean_abs, 1e-5);
  const std::vector<float> bias_after = layer.buffer("bias").to_vector<float>();
  for (int64_t j = 0; j < out; ++j) EXPECT_NEAR(bias_after[j] - bias_before[j], want[j], 1e-5) << j;

  // The corrected layer's mean output now equals the float one.
  NoGradGuard no_grad;
  const Tensor x = cat(batches, 0);
  const std::vector<double> d = mean(twins.at("0")->forward(x) - layer.forward(x), {0}).to_vector<double>();
  for (int64_t j = 0; j < out; ++j) EXPECT_NEAR(d[j], 0.0, 1e-5) << j;
}

// Each layer is corrected on its input inside the already-corrected model, so running the
// correction again finds (almost) nothing to do; correcting in the wrong order would leave the
// second conv's shift from the first conv's correction.
TEST(BiasCorrection, ConvLayersInOrderSecondPassIsNearZero) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2D>(3, 6, 3, 1, 1), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2D>(6, 4, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 6 * 6, 5)});
  Generator gen(4);
  std::vector<Tensor> batches;
  for (int i = 0; i < 2; ++i) batches.push_back(rand({8, 3, 6, 6}, DType::F32, &gen) + 0.5);
  quant_aware(*net, with_weight_bits(3));
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);

  Tensor before, after, x = cat(batches, 0), want;
  {
    NoGradGuard no_grad;
    before = (*net)(x);
  }
  const auto first = bias_correction(*net, twins, batches);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].name, "0");
  EXPECT_EQ(first[1].name, "2");
  EXPECT_EQ(first[2].name, "5");
  for (const auto& r : first) {
    EXPECT_TRUE(r.corrected) << r.name;
    EXPECT_GT(r.mean_abs_correction, 1e-4) << r.name;
  }
  const auto second = bias_correction(*net, twins, batches);
  for (size_t i = 0; i < second.size(); ++i)
    EXPECT_LT(second[i].mean_abs_correction, 1e-3 * first[i].mean_abs_correction + 1e-7) << second[i].name;

  // The output's mean error against the float model shrinks.
  {
    NoGradGuard no_grad;
    after = (*net)(x);
    for (const auto& [name, twin] : twins) net->replace_submodule(name, twin);
    want = (*net)(x);
  }
  auto mean_abs_bias = [&](const Tensor& y) {
    const auto d = mean(y - want, {0}).to_vector<double>();
    double s = 0;
    for (double v : d) s += std::abs(v);
    return s / static_cast<double>(d.size());
  };
  EXPECT_LT(mean_abs_bias(after), 0.5 * mean_abs_bias(before));
}

TEST(BiasCorrection, LayerWithoutBiasIsReportedAndLeftAlone) {
  manual_seed(5);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2D>(2, 4, 3, 1, 1, 1, 1, /*bias=*/false), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2D>(4, 4, 1)});
  Generator gen(6);
  const std::vector<Tensor> batches{rand({4, 2, 5, 5}, DType::F32, &gen) + 1.0};
  quant_aware(*net, with_weight_bits(3));
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  const std::vector<int8_t> w0 = net->child("0").buffer("weight").to_vector<int8_t>();
  const auto r = bias_correction(*net, twins, batches);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].name, "0");
  EXPECT_FALSE(r[0].corrected);
  EXPECT_GT(r[0].mean_abs_correction, 0.0);  // what it would have corrected
  EXPECT_FALSE(net->child("0").has_buffer("bias"));
  EXPECT_EQ(net->child("0").buffer("weight").to_vector<int8_t>(), w0);
  EXPECT_TRUE(r[1].corrected);
}

// Paddle's weight-statistics variant, against the formula evaluated here from scratch. The row is
// one where the stretch by std(W)/std(Wq) moves some integers (usually the variant changes none).
TEST(BiasCorrection, WeightStatisticsVariantMatchesPaddlesFormula) {
  manual_seed(8);
  const int64_t in = 16, out = 2;
  auto linear = std::make_shared<nn::Linear>(in, out);
  {
    const std::vector<float> row{3.0f,  2.49f,  1.49f,  0.49f, 0.49f,  2.49f,  -2.49f, -2.49f,
                                 -2.49f, -1.2f, -1.49f, -2.49f, -1.51f, 1.49f, 1.49f,  2.49f};
    std::vector<float> w(row);
    for (float v : row) w.push_back(0.5f * v);
    NoGradGuard no_grad;
    linear->weight().copy_(from_vector<float>(w, {out, in}));
  }
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{linear});
  const std::vector<Tensor> batches{randn({4, in})};
  quant_aware(*net, with_weight_bits(3));
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  auto& layer = dynamic_cast<ConvertedLinear&>(net->child("0"));
  const std::vector<float> w = twins.at("0")->param("weight").to_vector<float>();
  const std::vector<float> sw = layer.buffer("weight_scale").to_vector<float>();
  const std::vector<int8_t> before = layer.buffer("weight").to_vector<int8_t>();
  const std::vector<float> bias = layer.buffer("bias").to_vector<float>();

  std::vector<int8_t> want(w.size());
  double mean_abs = 0;
  for (int64_t j = 0; j < out; ++j) {
    double mw = 0, mq = 0, vw = 0, vq = 0;
    std::vector<double> wq(in);
    for (int64_t k = 0; k < in; ++k) {
      wq[k] = fq(w[j * in + k], sw[j], -3, 3);
      mw += w[j * in + k] / double(in);
      mq += wq[k] / double(in);
    }
    for (int64_t k = 0; k < in; ++k) {
      vw += (w[j * in + k] - mw) * (w[j * in + k] - mw) / double(in);
      vq += (wq[k] - mq) * (wq[k] - mq) / double(in);
    }
    mean_abs += std::abs(mw - mq) / out;
    for (int64_t k = 0; k < in; ++k) {
      const float v = static_cast<float>((wq[k] + mw - mq) * std::sqrt(vw) / (std::sqrt(vq) + 1e-8));
      want[j * in + k] = static_cast<int8_t>(std::min(std::max(std::nearbyint(v * (1.0f / sw[j])), -3.0f), 3.0f));
    }
  }
  ASSERT_NE(want, before) << "the constructed layer should change some integers";
  const auto r = weight_bias_correction(*net, twins);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].corrected);
  EXPECT_NEAR(r[0].mean_abs_correction, mean_abs, 1e-6);
  EXPECT_EQ(layer.buffer("weight").to_vector<int8_t>(), want);
  EXPECT_EQ(layer.buffer("bias").to_vector<float>(), bias);
  EXPECT_EQ(layer.buffer("weight_scale").to_vector<float>(), sw);
  expect_error([&] { weight_bias_correction(*net, FloatTwins{}); }, {"weight_bias_correction", "no float twin"});
}

TEST(BiasCorrection, Errors) {
  manual_seed(7);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Linear>(3, 2)});
  const std::vector<Tensor> batches{randn({4, 3})};
  expect_error([&] { float_twins(*net); }, {"no quantized layer"});
  expect_error([&] { bias_correction(*net, FloatTwins{}, batches); }, {"bias_correction", "no converted weight layer"});
  quant_aware(*net, QuantConfig());
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  expect_error([&] { bias_correction(*net, twins, {}); }, {"bias_correction", "no calibration batches"});
  expect_error([&] { bias_correction(*net, twins, {Tensor()}); }, {"batch 0", "undefined"});
  expect_error([&] { bias_correction(*net, FloatTwins{}, batches); }, {"no float twin", "'0'"});
  expect_error([&] { bias_correction(*net, twins, {randn({4, 5})}); }, {"Linear", "in_features=3"});
}
