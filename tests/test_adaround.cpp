// AdaRound (quant/adaround.h): the rectified sigmoid and the regulariser against finite
// differences, the gradient reaching V through the soft-quantized conv, and on a fixed 4-bit conv
// layer: lower output error than round-to-nearest with a binary rounding (floor or floor + 1 of
// W/s, inside the grid). Also the model-level driver and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/factory.h"
#include "core/random.h"
#include "nn/activation.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/adaround.h"
#include "quant/converted_layers.h"
#include "quant/float_twin.h"
#include "quant/qat.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::expect_error;

namespace {

// V values away from the kinks: |V| >= 0.3 (|2h-1| at h = 0.5) and |V| <= 2 (clamp edges at +-log 11).
Tensor smooth_v(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  for (double& x : v) x = (gen.uniform() < 0.5 ? -1 : 1) * (0.3 + 1.7 * gen.uniform());
  return from_vector<double>(v, shape);
}

void calibrate(nn::Module& m, const std::vector<Tensor>& batches) {
  NoGradGuard no_grad;
  m.train();
  for (const Tensor& b : batches) m(b);
  m.eval();
}

// Inputs correlated across channels and neighbouring pixels, like real feature maps. (With white
// inputs the output error is a sum of independent per-weight errors, so nearest rounding is already
// optimal and AdaRound has nothing to learn.)
std::vector<Tensor> make_batches(int n, const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  const int64_t c = shape[1];
  const Tensor mix = randn({c, c, 3, 3}, DType::F32, &gen) * 0.2 + 0.3;
  Conv2dParams p;
  p.padding = {1, 1};
  NoGradGuard no_grad;
  std::vector<Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(conv2d(randn(shape, DType::F32, &gen), mix, Tensor(), p));
  return out;
}

QuantConfig w4a8() {
  QuantSettings s;
  s.weight_bits = 4;
  return QuantConfig(s);
}

}  // namespace

TEST(AdaRound, RectifiedSigmoidMatchesFormulaAndInverse) {
  const Tensor v = tensor({-5.0, -1.0, 0.0, 0.5, 3.0}, {5}, DType::F64);
  const auto h = rectified_sigmoid(v).to_vector<double>();
  const double want[5] = {0.0, 1.2 / (1 + std::exp(1.0)) - 0.1, 0.5, 1.2 / (1 + std::exp(-0.5)) - 0.1, 1.0};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(h[i], want[i], 1e-12) << i;
  const Tensor frac = tensor({0.0, 0.1, 0.5, 0.75, 0.999}, {5}, DType::F64);
  EXPECT_TRUE(AllClose(rectified_sigmoid(rectified_sigmoid_inverse(frac)), frac, 0, 1e-12));
  expect_error([&] { rectified_sigmoid_inverse(tensor({1.0}, {1})); }, {"[0, 1)"});
}

TEST(AdaRound, RectifiedSigmoidAndRegulariserGradcheck) {
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return rectified_sigmoid(in[0]); },
                                {smooth_v({3, 4}, 1).set_requires_grad()});
  EXPECT_TRUE(r.ok) << r.message;
  for (double beta : {20.0, 6.0, 2.0}) {
    r = gradcheck([beta](const std::vector<Tensor>& in) { return adaround_regularizer(rectified_sigmoid(in[0]), beta); },
                  {smooth_v({3, 4}, 2).set_requires_grad()});
    EXPECT_TRUE(r.ok) << "beta " << beta << ": " << r.message;
  }
}

// The reconstruction loss of AdaRound's soft weight, as adaround_layer builds it, is differentiable
// in V all the way through the conv (Paddle's static AdaRound never passes this gradient).
TEST(AdaRound, GradientReachesRoundingVariablesThroughTheConv) {
  Generator gen(3);
  const Tensor x = randn({2, 2, 5, 5}, DType::F64, &gen);
  const Tensor target = randn({2, 3, 5, 5}, DType::F64, &gen);
  // floor(W/s) strictly inside the 4-bit narrow grid, so floor + h never reaches the clamp.
  const Tensor wfloor = randint(-6, 6, {3, 2, 3, 3}, DType::I64, &gen).to(DType::F64);
  const Tensor step = tensor({0.05, 0.1, 0.07}, {3, 1, 1, 1}, DType::F64);
  Conv2dParams p;
  p.padding = {1, 1};
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& in) {
        const Tensor w = clamp(wfloor + rectified_sigmoid(in[0]), -7, 7) * step;
        const Tensor d = conv2d(x, w, Tensor(), p) - target;
        return sum(d * d) + adaround_regularizer(rectified_sigmoid(in[0]), 4.0) * 0.01;
      },
      {smooth_v({3, 2, 3, 3}, 4).set_requires_grad()});
  EXPECT_TRUE(r.ok) << r.message;
}

// A fixed conv layer with random weights and inputs, weights at 4 bits per channel.
TEST(AdaRound, BeatsNearestOnAFixed4BitConvWithBinaryRounding) {
  manual_seed(5);
  auto net = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Conv2D>(6, 8, 3, 1, 1)});
  const std::vector<Tensor> batches = make_batches(4, {32, 6, 8, 8}, 6);
  quant_aware(*net, w4a8());
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  convert(*net);
  auto& layer = dynamic_cast<ConvertedConv2D&>(net->child("0"));
  const Tensor w = twins.at("0")->param("weight").detach();
  const std::vector<float> steps = layer.buffer("weight_scale").to_vector<float>();
  const std::vector<int8_t> nearest = layer.buffer("weight").to_vector<int8_t>();

  const Tensor x = cat(batches, 0);
  Tensor target;
  {
    NoGradGuard no_grad;
    target = twins.at("0")->forward(x);
  }
  AdaRoundOptions o;
  o.iterations = 400;
  o.batch_size = 32;
  const AdaRoundLayer r = adaround_layer(layer, w, x, target, o);

  // Independent errors from the stored integers: the converted layer's forward vs the float conv.
  auto layer_mse = [&] {
    NoGradGuard no_grad;
    const auto a = layer.forward(x).to_vector<double>(), b = target.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s / static_cast<double>(a.size());
  };
  EXPECT_NEAR(r.mse_adaround, layer_mse(), 1e-9 + 1e-6 * r.mse_adaround);
  EXPECT_LT(r.mse_adaround, 0.7 * r.mse_nearest) << r.mse_adaround << " vs nearest " << r.mse_nearest;
  EXPECT_GT(r.changed_fraction, 0.0);
  EXPECT_LT(r.changed_fraction, 0.5);

  // Binary rounding: every integer is floor(W/s) or floor(W/s) + 1 (W/s as quantize computes it,
  // W * (1/s) in f32), clamped to the 4-bit narrow grid.
  const std::vector<float> wv = w.to_vector<float>();
  const std::vector<int8_t> q = layer.buffer("weight").to_vector<int8_t>();
  const size_t per = wv.size() / steps.size();
  int64_t changed = 0;
  for (size_t i = 0; i < wv.size(); ++i) {
    const float f = std::floor(wv[i] * (1.0f / steps[i / per]));
    EXPECT_GE(q[i], -7) << i;
    EXPECT_LE(q[i], 7) << i;
    EXPECT_TRUE(q[i] == std::clamp(f, -7.0f, 7.0f) || q[i] == std::clamp(f + 1.0f, -7.0f, 7.0f))
        << "weight " << i << ": W/s = " << wv[i] / steps[i / per] << ", stored " << int(q[i]);
    changed += q[i] != nearest[i];
  }
  EXPECT_NEAR(r.changed_fraction, static_cast<double>(changed) / static_cast<double>(wv.size()), 1e-12);
  // The steps are unchanged: only the rounding is learned.
  EXPECT_EQ(layer.buffer("weight_scale").to_vector<float>(), steps);
}

TEST(AdaRound, ModelDriverRoundsEveryLayerInOrderAndIsSeeded) {
  auto build = [] {
    manual_seed(7);
    auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Conv2D>(2, 6, 3, 1, 1), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Conv2D>(6, 6, 3, 2, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
        std::make_shared<nn::Linear>(6 * 4 * 4, 5)});
    return net;
  };
  const std::vector<Tensor> batches = make_batches(3, {16, 2, 8, 8}, 8);
  AdaRoundOptions o;
  o.iterations = 120;
  o.batch_size = 16;
  std::vector<std::vector<int8_t>> first;
  for (int run = 0; run < 2; ++run) {
    auto net = build();
    quant_aware(*net, w4a8());
    calibrate(*net, batches);
    const FloatTwins twins = float_twins(*net);
    convert(*net);
    net->train();  // the driver works in eval mode and restores the modes
    std::vector<std::string> seen;
    const auto rs = adaround(*net, twins, batches, o, [&](size_t i, size_t n, const std::string& name) {
      EXPECT_EQ(i, seen.size());
      EXPECT_EQ(n, 3u);
      seen.push_back(name);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"0", "2", "5"}));
    ASSERT_EQ(rs.size(), 3u);
    for (const auto& r : rs) {
      EXPECT_LE(r.mse_adaround, r.mse_nearest) << r.name;
      EXPECT_GT(r.seconds, 0.0);
    }
    EXPECT_TRUE(net->is_training());
    EXPECT_TRUE(net->child("0").is_training());
    std::vector<std::vector<int8_t>> ints;
    for (const char* n : {"0", "2", "5"}) ints.push_back(net->child(n).buffer("weight").to_vector<int8_t>());
    if (run == 0) first = ints;
    else EXPECT_EQ(ints, first) << "same seed, same rounding";
  }
}

TEST(AdaRound, Errors) {
  manual_seed(9);
  auto net = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Conv2D>(2, 3, 3)});
  const std::vector<Tensor> batches = make_batches(1, {4, 2, 6, 6}, 10);
  quant_aware(*net, w4a8());
  calibrate(*net, batches);
  const FloatTwins twins = float_twins(*net);
  expect_error([&] { adaround(*net, twins, batches); }, {"adaround", "no converted weight layer"});  // not yet converted
  convert(*net);
  expect_error([&] { float_twins(*net); }, {"float_twins", "no quantized layer"});
  expect_error([&] { adaround(*net, twins, {}); }, {"adaround", "no calibration batches"});
  expect_error([&] { adaround(*net, FloatTwins{}, batches); }, {"no float twin", "'0'"});
  AdaRoundOptions bad;
  bad.iterations = 0;
  expect_error([&] { adaround(*net, twins, batches, bad); }, {"iterations"});
  bad = {};
  bad.beta_end = 30;
  expect_error([&] { adaround(*net, twins, batches, bad); }, {"beta_start"});
  auto& layer = dynamic_cast<ConvertedConv2D&>(net->child("0"));
  expect_error([&] { adaround_layer(layer, zeros({3, 2, 1, 1}), batches[0], batches[0]); }, {"float weight", "[3, 2, 1, 1]"});
  expect_error([&] { adaround_layer(layer, twins.at("0")->param("weight"), batches[0], zeros({3, 3, 4, 4})); }, {"same non-zero number of samples"});
}
