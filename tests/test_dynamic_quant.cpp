// quant_post_dynamic: integer weights equal clamp(round(w/s)) by hand, dynamic layers compute the
// float op with the dequantized weights, INT16 is far closer to FP32 than INT8, save/load through
// the qslim-int8 format is exact and shrinks the file ~4x / ~2x, the test model, and bad options.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "core/random.h"
#include "models/registry.h"
#include "nn/activation.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/dynamic_layers.h"
#include "quant/dynamic_quant.h"
#include "quant/quantized_io.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;
namespace fs = std::filesystem;

using qslim::testing::expect_error;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_dynamic_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Expects `fn` to throw an Error whose message contains every one of `parts`.
// q = clamp(round_half_even(w / s), -qmax, qmax), s = max|w| / qmax per output channel (rows of
// `per` elements) or over the tensor, computed in double.
struct ByHand {
  std::vector<int64_t> q;
  std::vector<double> s;
};
ByHand quantize_by_hand(const std::vector<float>& w, int64_t channels, int bits) {
  const double qmax = std::pow(2.0, bits - 1) - 1;
  const int64_t per = static_cast<int64_t>(w.size()) / channels;
  ByHand h;
  for (int64_t c = 0; c < channels; ++c) {
    double m = 0;
    for (int64_t i = c * per; i < (c + 1) * per; ++i) m = std::max(m, std::fabs(static_cast<double>(w[i])));
    const double s = static_cast<float>(m / qmax);  // stored as f32
    h.s.push_back(s);
    for (int64_t i = c * per; i < (c + 1) * per; ++i)
      h.q.push_back(static_cast<int64_t>(std::clamp(std::nearbyint(w[i] / s), -qmax, qmax)));
  }
  return h;
}

std::shared_ptr<nn::Linear> linear_with(const std::vector<float>& w, int64_t out, int64_t in) {
  auto lin = std::make_shared<nn::Linear>(in, out);
  NoGradGuard g;
  lin->weight().copy_(from_vector(w, {out, in}));
  return lin;
}

// Naive reference conv (NCHW, weight [out, in/groups, kh, kw]) in double.
std::vector<double> naive_conv(const std::vector<float>& x, const Shape& xs, const std::vector<double>& w,
                               const Shape& ws, const std::vector<float>& b, int64_t stride, int64_t pad,
                               int64_t groups, Shape& out_shape) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1, Og = O / groups;
  out_shape = {N, O, OH, OW};
  std::vector<double> y(N * O * OH * OW);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = b.empty() ? 0.0 : b[o];
          const int64_t g = o / Og;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += static_cast<double>(x[((n * C + g * Cg + ci) * H + ih) * W + iw]) *
                       w[((o * Cg + ci) * KH + kh) * KW + kw];
              }
          y[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
  return y;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}

nn::ModulePtr trained_like_lenet(uint64_t seed) {
  manual_seed(seed);
  auto m = models::create_model("lenet");
  m->eval();
  return m;
}

Tensor run(nn::Module& m, const Tensor& x) {
  NoGradGuard g;
  return m(x);
}

}  // namespace

// ---------------------------------------------------------------- integer weights by hand

TEST(DynamicQuant, LiteralWeightsPerChannelAndPerTensorInt8) {
  // Row 0: s = 1/127, w/s = 76.2, -127, 31.75; row 1: s = 2/127, w/s = 127, 19.05, -44.45.
  auto lin = linear_with({0.6f, -1.0f, 0.25f, 2.0f, 0.3f, -0.7f}, 2, 3);
  auto pc = quant::DynamicQuantLinear::from_float(*lin, 8, 0);
  EXPECT_EQ(pc->buffer("weight").dtype(), DType::I8);
  EXPECT_EQ(pc->buffer("weight").to_vector<int64_t>(), (std::vector<int64_t>{76, -127, 32, 127, 19, -44}));
  EXPECT_EQ(pc->buffer("weight_scale").to_vector<float>(), (std::vector<float>{1.0f / 127, 2.0f / 127}));
  EXPECT_EQ(pc->buffer("bias").to_vector<float>(), lin->bias().to_vector<float>());
  // One step 2/127 for the tensor: w/s = 38.1, -69.85, 15.875, 127, 19.05, -44.45.
  auto lt = linear_with({0.6f, -1.1f, 0.25f, 2.0f, 0.3f, -0.7f}, 2, 3);
  auto pt = quant::DynamicQuantLinear::from_float(*lt, 8, -1);
  EXPECT_EQ(pt->buffer("weight").to_vector<int64_t>(), (std::vector<int64_t>{38, -70, 16, 127, 19, -44}));
  EXPECT_EQ(pt->buffer("weight_scale").to_vector<float>(), (std::vector<float>{2.0f / 127}));
}

TEST(DynamicQuant, RandomWeightsEqualRoundedQuotient8And16Bits) {
  manual_seed(11);
  auto conv = std::make_shared<nn::Conv2D>(3, 5, 3);
  const std::vector<float> w = conv->weight().to_vector<float>();
  for (int bits : {8, 16}) {
    for (int64_t axis : {int64_t(0), int64_t(-1)}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " axis " + std::to_string(axis));
      auto q = quant::DynamicQuantConv2D::from_float(*conv, bits, axis);
      EXPECT_EQ(q->buffer("weight").dtype(), bits == 8 ? DType::I8 : DType::I16);
      const ByHand h = quantize_by_hand(w, axis == 0 ? 5 : 1, bits);
      EXPECT_EQ(q->buffer("weight").to_vector<int64_t>(), h.q);
      EXPECT_EQ(q->buffer("weight_scale").to_vector<double>(), h.s);
      // The extreme weight of each channel maps to +-qmax.
      const int64_t qmax = bits == 8 ? 127 : 32767;
      int64_t top = 0;
      for (int64_t v : h.q) top = std::max<int64_t>(top, std::llabs(v));
      EXPECT_EQ(top, qmax);
      EXPECT_EQ(q->source_type(), "Conv2D");
    }
  }
}

TEST(DynamicQuant, AllZeroChannelStaysFinite) {
  auto lin = linear_with({0, 0, 0, 1.1f, -2, 0.5f}, 2, 3);
  auto q = quant::DynamicQuantLinear::from_float(*lin, 8, 0);
  EXPECT_EQ(q->buffer("weight").to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 70, -127, 32}));
  EXPECT_GT(q->buffer("weight_scale").to_vector<float>()[0], 0.f);
  for (float v : q->dequantized_weight().to_vector<float>()) EXPECT_TRUE(std::isfinite(v));
}

// ---------------------------------------------------------------- forward = float op on q * s

TEST(DynamicQuant, LinearForwardIsFloatLinearOfDequantizedWeight) {
  manual_seed(12);
  auto lin = std::make_shared<nn::Linear>(7, 4);
  auto q = quant::DynamicQuantLinear::from_float(*lin, 8, 0);
  const Tensor x = randn({3, 7});
  const auto iq = q->buffer("weight").to_vector<double>();
  const auto s = q->buffer("weight_scale").to_vector<double>();
  const auto b = lin->bias().to_vector<double>();
  const auto xv = x.to_vector<double>();
  std::vector<double> ref(3 * 4);
  for (int n = 0; n < 3; ++n)
    for (int o = 0; o < 4; ++o) {
      double acc = b[o];
      for (int i = 0; i < 7; ++i) acc += xv[n * 7 + i] * iq[o * 7 + i] * s[o];
      ref[n * 4 + o] = acc;
    }
  EXPECT_TRUE(AllClose(run(*q, x), from_vector(ref, {3, 4}).to(DType::F32), 1e-5, 1e-5));
  // Weight-only: the output is not the float layer's exactly (the weight was rounded).
  EXPECT_GT(max_abs_diff(run(*q, x), run(*lin, x)), 0.0);
  expect_error([&] { run(*q, randn({3, 6})); }, {"DynamicQuantLinear", "in_features=7"});
}

TEST(DynamicQuant, ConvForwardIsFloatConvOfDequantizedWeight) {
  manual_seed(13);
  struct Case {
    int64_t in, out, groups, stride, pad;
    std::string type;
  };
  for (const Case& c :
       {Case{4, 6, 1, 1, 1, "Conv2D"}, Case{4, 4, 4, 2, 1, "DepthwiseConv2D"}, Case{4, 6, 2, 1, 0, "Conv2D"}}) {
    SCOPED_TRACE(c.type + " groups " + std::to_string(c.groups));
    auto conv = std::make_shared<nn::Conv2D>(c.in, c.out, 3, c.stride, c.pad, 1, c.groups);
    for (int bits : {8, 16}) {
      auto q = quant::DynamicQuantConv2D::from_float(*conv, bits, 0);
      EXPECT_EQ(q->source_type(), c.type);
      const Tensor x = randn({2, c.in, 6, 5});
      const auto iq = q->buffer("weight").to_vector<double>();
      const auto s = q->buffer("weight_scale").to_vector<double>();
      std::vector<double> w(iq.size());
      const int64_t per = static_cast<int64_t>(iq.size()) / c.out;
      for (size_t i = 0; i < iq.size(); ++i) w[i] = iq[i] * s[i / per];
      Shape ys;
      const auto ref = naive_conv(x.to_vector<float>(), x.shape(), w, conv->weight().shape(),
                                  conv->bias().to_vector<float>(), c.stride, c.pad, c.groups, ys);
      EXPECT_TRUE(AllClose(run(*q, x), from_vector(ref, ys).to(DType::F32), 1e-5, 1e-5));
    }
  }
}

TEST(DynamicQuant, CachedWeightFollowsReloadedIntegers) {
  manual_seed(14);
  auto a = quant::DynamicQuantLinear::from_float(nn::Linear(5, 3), 8, 0);
  auto b = quant::DynamicQuantLinear::from_float(nn::Linear(5, 3), 8, 0);
  const Tensor x = randn({2, 5});
  const Tensor before = run(*a, x);  // fills a's cache
  a->load_state_dict(b->state_dict());
  EXPECT_TRUE(AllClose(run(*a, x), run(*b, x), 0, 0));
  EXPECT_GT(max_abs_diff(before, run(*a, x)), 1e-3);
}

// ---------------------------------------------------------------- whole models

TEST(DynamicQuant, LeNetInt16IsMuchCloserToFp32ThanInt8) {
  const Tensor x = randn({8, 1, 28, 28});
  auto fp32 = trained_like_lenet(21);
  const Tensor ref = run(*fp32, x);
  double err[2];
  for (int k = 0; k < 2; ++k) {
    auto m = trained_like_lenet(21);
    quant::DynamicOptions o;
    o.weight_bits = k == 0 ? 8 : 16;
    const auto layers = quant::quant_post_dynamic(*m, o);
    ASSERT_EQ(layers.size(), 5u);
    EXPECT_EQ(layers[0].name, "conv1");
    EXPECT_EQ(layers[4].name, "fc3");
    EXPECT_EQ(m->child("fc1").type_name(), "DynamicQuantLinear");
    EXPECT_EQ(m->child("conv2").type_name(), "DynamicQuantConv2D");
    err[k] = max_abs_diff(run(*m, x), ref);
  }
  double scale = 0;
  for (double v : ref.to_vector<double>()) scale = std::max(scale, std::fabs(v));
  EXPECT_GT(err[0], 0.0);
  EXPECT_LT(err[0], 0.05 * scale) << "INT8 error " << err[0];
  // Steps are 258x finer at 16 bits (32767 / 127); allow a wide margin for error cancellation.
  EXPECT_GT(err[0] / err[1], 50.0) << "INT8 " << err[0] << " INT16 " << err[1];
}

TEST(DynamicQuant, SaveLoadRoundTripIsExactAndShrinksTheFile) {
  const fs::path d = temp_dir("io");
  auto fp32 = trained_like_lenet(22);
  const fs::path fp32_file = d / "fp32.safetensors";
  nn::save_module(fp32_file.string(), *fp32, {{"model", "lenet"}});
  const Tensor x = randn({4, 1, 28, 28});
  for (int bits : {8, 16}) {
    for (const char* type : {"channel_wise_abs_max", "abs_max"}) {
      SCOPED_TRACE(std::to_string(bits) + " bits, " + type);
      auto m = trained_like_lenet(22);
      quant::DynamicOptions o;
      o.weight_bits = bits;
      o.weight_quantize_type = type;
      quant::quant_post_dynamic(*m, o);
      const fs::path file = d / ("q" + std::to_string(bits) + type + ".safetensors");
      quant::save_converted(file.string(), *m, o.to_quant_config(), "lenet");
      auto loaded = quant::load_converted(file.string());
      EXPECT_TRUE(AllClose(run(*loaded, x), run(*m, x), 0, 0));
      auto* fc1 = dynamic_cast<quant::DynamicQuantLinear*>(&loaded->child("fc1"));
      ASSERT_NE(fc1, nullptr);
      EXPECT_EQ(fc1->buffer("weight").dtype(), bits == 8 ? DType::I8 : DType::I16);
      EXPECT_EQ(fc1->weight_axis(), std::string(type) == "abs_max" ? -1 : 0);
      const auto meta = quant::converted_metadata(file.string());
      EXPECT_NE(meta.at("layers").find("\"type\":\"DynamicQuantConv2D\""), std::string::npos);
      // LeNet: 61,470 weights + 236 biases (246,824 bytes in f32). INT8 payload 61,470 + 4 * 236
      // (bias) + 4 * 236 (steps) = 63,358 bytes, 0.257x; INT16 124,828 bytes, 0.506x. The headers
      // (tensor table, per-layer JSON) add ~1%.
      const double ratio = static_cast<double>(fs::file_size(file)) / static_cast<double>(fs::file_size(fp32_file));
      if (bits == 8) {
        EXPECT_GT(ratio, 0.25);
        EXPECT_LT(ratio, 0.28);
      } else {
        EXPECT_GT(ratio, 0.50);
        EXPECT_LT(ratio, 0.53);
      }
    }
  }
  fs::remove_all(d);
}

// Layer entries that do not fit the model or the format are rejected, naming the file and layer.
TEST(DynamicQuant, EditedLayerEntriesAreRejected) {
  const fs::path d = temp_dir("edited");
  auto m = trained_like_lenet(24);
  quant::DynamicOptions o;
  quant::quant_post_dynamic(*m, o);
  const fs::path file = d / "q.safetensors";
  quant::save_converted(file.string(), *m, o.to_quant_config(), "lenet");
  const nn::LoadedTensors good = nn::load_tensors(file.string());
  auto edited = [&](const std::string& from, const std::string& to) {
    auto meta = good.metadata;
    std::string& layers = meta.at("layers");
    const size_t pos = layers.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    if (pos != std::string::npos) layers.replace(pos, from.size(), to);
    const fs::path f = d / "edited.safetensors";
    nn::save_tensors(f.string(), good.tensors, meta);
    return f.string();
  };
  // conv1 is the first entry.
  std::string f = edited("\"type\":\"DynamicQuantConv2D\"", "\"type\":\"DynamicQuantLinear\"");
  expect_error([&] { quant::load_converted(f); }, {f, "layer 'conv1'", "expected a Linear, found Conv2D"});
  f = edited("\"bits\":8", "\"bits\":4");
  expect_error([&] { quant::load_converted(f); }, {f, "layer 'conv1'", "weight_bits must be 8 or 16"});
  f = edited("\"type\":\"DynamicQuantConv2D\"", "\"type\":\"DynamicConv\"");
  expect_error([&] { quant::load_converted(f); },
               {"unknown converted type 'DynamicConv'", "DynamicQuantLinear, QuantEmbedding"});
  fs::remove_all(d);
}

TEST(DynamicQuant, FileFormWritesTheQuantizedAndTestModels) {
  const fs::path d = temp_dir("files");
  auto fp32 = trained_like_lenet(23);
  const fs::path ckpt = d / "model.safetensors";
  nn::save_module(ckpt.string(), *fp32,
                  {{"format", "qslim-fp32"},
                   {"model", "lenet"},
                   {"dataset", "fashion-mnist"},
                   {"mean", "[0.286]"},
                   {"std", "[0.353]"}});
  quant::DynamicOptions o;
  o.weight_bits = 16;
  o.generate_test_model = true;
  const quant::DynamicFiles f = quant::quant_post_dynamic(ckpt.string(), (d / "out").string(), o);
  EXPECT_EQ(f.quantized, (d / "out" / "model_int16.safetensors").string());
  EXPECT_EQ(f.test_model, (d / "out" / "model_test_fp32.safetensors").string());
  EXPECT_EQ(f.model_spec, "lenet");
  const auto meta = quant::converted_metadata(f.quantized);
  EXPECT_EQ(meta.at("mean"), "[0.286]");
  EXPECT_EQ(meta.at("quant_method"), "dynamic");
  auto q = quant::load_converted(f.quantized);
  // The test model is a plain float LeNet holding the dequantized weights: it computes what the
  // quantized model computes.
  auto t = models::create_model("lenet");
  const auto tmeta = nn::load_module(f.test_model, *t, /*strict=*/true);
  EXPECT_EQ(tmeta.at("format"), "qslim-fp32");
  t->eval();
  const Tensor x = randn({3, 1, 28, 28});
  EXPECT_TRUE(AllClose(run(*t, x), run(*q, x), 0, 0));
  EXPECT_GT(max_abs_diff(run(*t, x), run(*fp32, x)), 0.0);
  // A quantized file is not an FP32 checkpoint.
  expect_error([&] { quant::quant_post_dynamic(f.quantized, (d / "again").string(), o); },
               {f.quantized, "qslim-int8", "FP32 model checkpoint"});
  fs::remove_all(d);
}

// ---------------------------------------------------------------- selection and bad input

TEST(DynamicQuant, TypesAliasesAndSkips) {
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2D>(4, 4, 3, 1, 1), std::make_shared<nn::Conv2D>(4, 4, 3, 1, 1, 1, 4),
      std::make_shared<nn::ReLU>()});
  auto head = std::make_shared<nn::Sequential>();
  head->push_back(std::make_shared<nn::Linear>(4, 2));
  net->push_back(head);
  quant::DynamicOptions o;
  o.quantizable_op_type = {"conv2d", "mul"};  // PaddleSlim names: depthwise convs are another type
  auto plan = quant::plan_quant_post_dynamic(*net, o);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].name, "0");
  EXPECT_EQ(plan[1].name, "3.0");
  EXPECT_EQ(plan[1].quant_type, "Linear");
  o.quantizable_op_type = {"DepthwiseConv2D"};
  plan = quant::plan_quant_post_dynamic(*net, o);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].quant_type, "DepthwiseConv2D");
  o.quantizable_op_type = {"Conv2D", "Linear", "DepthwiseConv2D"};
  o.not_quant_pattern = {"3."};
  plan = quant::quant_post_dynamic(*net, o);
  EXPECT_EQ(plan.size(), 2u);
  EXPECT_EQ(net->get_submodule("3.0")->type_name(), "Linear");
  EXPECT_EQ(net->get_submodule("1")->type_name(), "DynamicQuantConv2D");
  // Quantizing again finds nothing left, and says why.
  expect_error([&] { quant::quant_post_dynamic(*net, o); },
               {"no layer to quantize", "skipped by not_quant_pattern: 3.0", "already quantized: 0"});
}

TEST(DynamicQuant, BadOptionsAndModelsAreRejected) {
  auto lenet = models::create_model("lenet");
  quant::DynamicOptions o;
  o.weight_bits = 4;
  expect_error([&] { quant::quant_post_dynamic(*lenet, o); }, {"weight_bits must be 8 or 16", "got 4"});
  o = {};
  o.weight_quantize_type = "moving_average_abs_max";
  expect_error([&] { quant::quant_post_dynamic(*lenet, o); },
               {"moving_average_abs_max", "allowed: channel_wise_abs_max, abs_max"});
  o = {};
  o.quantizable_op_type = {"lstm"};
  expect_error([&] { quant::quant_post_dynamic(*lenet, o); },
               {"unknown quantizable op type 'lstm'", "Conv2D, DepthwiseConv2D, Linear, conv2d", "matmul_v2"});
  o.quantizable_op_type = {"relu"};
  expect_error([&] { quant::quant_post_dynamic(*lenet, o); }, {"'relu' (ReLU) has no weight"});
  o.quantizable_op_type = {};
  expect_error([&] { quant::quant_post_dynamic(*lenet, o); }, {"quantizable_op_type is empty"});
  // Nothing was changed by the failed calls.
  EXPECT_EQ(lenet->child("fc1").type_name(), "Linear");
  nn::Sequential acts{std::make_shared<nn::ReLU>()};
  expect_error([&] { quant::quant_post_dynamic(acts, {}); },
               {"no layer to quantize", "Conv2D, DepthwiseConv2D, Linear"});
  expect_error([] { quant::DynamicQuantLinear(3, 2, 12, 0, true); }, {"weight_bits must be 8 or 16", "got 12"});
  expect_error([] { quant::DynamicQuantLinear(3, 2, 8, 1, true); }, {"axis 0", "got axis 1"});
  // A float state dict needs dequantizable layers.
  expect_error([&] { quant::dequantized_state_dict(*lenet); }, {"no dynamic or embedding quantized layer"});
}
