// Quantization-aware training (quant/qat.h, quant_layers.h, conv_bn_fold.h, converted_layers.h,
// quantized_io.h): layer swapping with stable names, training, conv+BN folding (values against
// conv -> bn, gradients by gradcheck), convert and the converted model on disk.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/factory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "models/lenet.h"
#include "models/registry.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "nn/residual.h"
#include "quant/conv_bn_fold.h"
#include "quant/converted_layers.h"
#include "quant/qat.h"
#include "quant/quant_layers.h"
#include "quant/quantized_io.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::expect_error;

namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "qslim_qat_" + name; }

// Passes tensors through unchanged: isolates the folding arithmetic from quantization.
class IdentityQuanter : public Quanter {
 public:
  explicit IdentityQuanter(QuantRole role) : Quanter(options(role)) {}
  using Quanter::forward;
  Tensor forward(const Tensor& x) override { return x; }
  QuantParams quant_params() const override { QSLIM_FAIL("IdentityQuanter has no quantization"); }
  std::string type_name() const override { return "identity"; }

 private:
  static QuantOptions options(QuantRole role) {
    QuantOptions o;
    o.role = role;
    return o;
  }
};

// Reference fake quantization written from QUANT_SPEC §1: q = clamp(rint(x * (1/s)), qmin, qmax) * s,
// one step per index of axis 0 (or one for all).
Tensor fq_ref(const Tensor& x, const std::vector<float>& steps, int64_t qmin, int64_t qmax) {
  std::vector<float> v = x.to_vector<float>();
  const int64_t per = static_cast<int64_t>(v.size()) / static_cast<int64_t>(steps.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float s = steps[i / per];
    const float q = std::nearbyint(v[i] * (1.0f / s));
    v[i] = std::min<float>(std::max<float>(q, qmin), qmax) * s;
  }
  return from_vector<float>(v, x.shape());
}

std::vector<float> channel_abs_max(const Tensor& w) {
  std::vector<float> v = w.to_vector<float>();
  const int64_t c = w.size(0), per = w.numel() / c;
  std::vector<float> m(c, 0.0f);
  for (int64_t i = 0; i < w.numel(); ++i) m[i / per] = std::max(m[i / per], std::abs(v[i]));
  return m;
}

float abs_max(const Tensor& x) {
  float m = 0;
  for (float v : x.to_vector<float>()) m = std::max(m, std::abs(v));
  return m;
}

std::map<std::string, Tensor> as_map(const nn::NamedTensors& v) {
  std::map<std::string, Tensor> m;
  for (const auto& [n, t] : v) m[n] = t;
  return m;
}

int count_type(nn::Module& m, const std::string& type) {
  int n = 0;
  for (const auto& [name, mod] : m.named_modules())
    if (mod->type_name() == type) ++n;
  return n;
}

// A few SGD steps on a fixed random batch; returns the losses.
std::vector<double> train_steps(nn::Module& model, const Tensor& x, const Tensor& y, int steps, double lr = 0.02) {
  model.train();
  optim::SGD opt(model.parameters(), optim::GroupOptions{.lr = lr, .momentum = 0.9});
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    Tensor loss = cross_entropy(model(x), y);
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

Tensor eval_forward(nn::Module& model, const Tensor& x) {
  NoGradGuard no_grad;
  model.eval();
  return model(x);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

std::vector<int64_t> top1(const Tensor& logits) { return argmax(logits, 1).to_vector<int64_t>(); }

}  // namespace

// ---- swapping layers ----

TEST(QuantAware, LeNetSwapsLayersAndKeepsParameterNames) {
  manual_seed(1);
  models::LeNet5 net;
  const auto before = as_map(net.named_parameters());
  const auto state_before = as_map(net.state_dict());
  quant_aware(net, QuantConfig());

  for (const char* n : {"conv1", "conv2"}) EXPECT_EQ(net.child(n).type_name(), "QuantedConv2D") << n;
  for (const char* n : {"fc1", "fc2", "fc3"}) EXPECT_EQ(net.child(n).type_name(), "QuantedLinear") << n;
  for (const char* n : {"relu1", "pool1", "relu4"}) EXPECT_NE(net.child(n).type_name().rfind("Quanted", 0), 0u) << n;

  const auto after = as_map(net.named_parameters());
  for (const auto& [name, t] : before) {
    ASSERT_TRUE(after.count(name)) << name << " disappeared";
    EXPECT_TRUE(after.at(name).is_same(t)) << name << " is no longer the same tensor";
  }
  EXPECT_EQ(after.size(), before.size());  // the default quanters learn nothing
  for (const auto& [name, t] : as_map(net.state_dict()))
    if (!state_before.count(name)) {
      EXPECT_TRUE(name.find(".weight_quanter.") != std::string::npos ||
                  name.find(".activation_quanter.") != std::string::npos)
          << name;
    }
  auto& conv1 = dynamic_cast<QuantedConv2D&>(net.child("conv1"));
  EXPECT_EQ(conv1.weight_quanter().type_name(), "channel_wise_abs_max");
  EXPECT_EQ(conv1.weight_quanter().buffer("scale").numel(), 6);  // channels = out_channels
  EXPECT_EQ(conv1.activation_quanter().type_name(), "moving_average_abs_max");

  expect_error([&] { quant_aware(net, QuantConfig()); }, {"already quantized", "conv1"});
}

TEST(QuantAware, ResNet20SwapsEveryConvAndTheClassifier) {
  auto model = models::create_model("resnet20");
  const auto before = as_map(model->named_parameters());
  quant_aware(*model, QuantConfig());
  EXPECT_EQ(count_type(*model, "QuantedConv2D"), 21);  // stem, 18 block convs, 2 projections
  EXPECT_EQ(count_type(*model, "QuantedLinear"), 1);
  EXPECT_EQ(count_type(*model, "Conv2D"), 0);
  EXPECT_EQ(count_type(*model, "BatchNorm2D"), 21);
  EXPECT_EQ(model->get_submodule("layers.3.short.0")->type_name(), "QuantedConv2D");
  const auto after = as_map(model->named_parameters());
  for (const auto& [name, t] : before) {
    ASSERT_TRUE(after.count(name)) << name;
    EXPECT_TRUE(after.at(name).is_same(t)) << name;
  }
}

TEST(QuantAware, QuantedConvMatchesReferenceFakeQuant) {
  manual_seed(2);
  auto conv = std::make_shared<nn::Conv2D>(3, 4, 3, 1, 1);
  QuantConfig c;
  QuantedConv2D q(conv, c.default_weight().make(4), c.default_activation().make());
  Tensor x = randn({2, 3, 6, 6});
  Tensor y = q(x);  // training: the first batch's abs-max is the activation threshold

  const float sa = static_cast<float>(abs_max(x) / 127.0);
  std::vector<float> sw;
  for (float m : channel_abs_max(conv->weight())) sw.push_back(static_cast<float>(m / 127.0));
  Tensor want = conv2d(fq_ref(x, {sa}, -128, 127), fq_ref(conv->weight().detach(), sw, -127, 127),
                       conv->bias().detach(), conv->conv_params());
  EXPECT_TRUE(AllClose(y, want, 1e-5, 1e-5));

  // Gradients reach the float weight (straight-through) and the input.
  x.set_requires_grad();
  sum(q(x)).backward();
  EXPECT_TRUE(conv->weight().grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

TEST(QuantAware, TrainingStepsLowerTheLoss) {
  manual_seed(3);
  set_num_threads(2);
  models::LeNet5 net;
  quant_aware(net, QuantConfig());
  // A learnable task: each class is a fixed random image plus noise.
  Generator gen(7);
  Tensor templates = randn({10, 1, 28, 28}, DType::F32, &gen);
  Tensor y = randint(0, 10, {32}, DType::I64, &gen);
  std::vector<Tensor> rows;
  for (int64_t c : y.to_vector<int64_t>()) rows.push_back(templates.select(0, c).unsqueeze(0));
  Tensor x = cat(rows, 0) + randn({32, 1, 28, 28}, DType::F32, &gen) * 0.5;
  // The optimizer is built after quant_aware, from the same parameters as before.
  optim::Adam opt(net.parameters(), optim::GroupOptions{.lr = 3e-3});
  std::vector<double> losses;
  for (int i = 0; i < 16; ++i) {
    opt.zero_grad();
    Tensor loss = cross_entropy(net(x), y);
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  EXPECT_LT(losses.back(), 0.4 * losses.front()) << losses.front() << " -> " << losses.back();
  for (double l : losses) EXPECT_TRUE(std::isfinite(l));
}

// ---- conv + batch norm folding ----

namespace {

struct ConvBn {
  std::shared_ptr<nn::Conv2D> conv;
  std::shared_ptr<nn::BatchNorm2D> bn;
};

// Conv with bias and a batch norm with non-trivial statistics and affine parameters.
ConvBn make_conv_bn(int64_t in, int64_t out, uint64_t seed, DType dt = DType::F32) {
  manual_seed(seed);
  ConvBn r{std::make_shared<nn::Conv2D>(in, out, 3, 1, 1), std::make_shared<nn::BatchNorm2D>(out)};
  Generator gen(seed);
  NoGradGuard no_grad;
  r.bn->param("weight").copy_(uniform({out}, 0.5, 1.5, DType::F32, &gen));
  r.bn->param("bias").copy_(randn({out}, DType::F32, &gen));
  r.bn->buffer("running_mean").copy_(randn({out}, DType::F32, &gen) * 0.3);
  r.bn->buffer("running_var").copy_(uniform({out}, 0.5, 2.0, DType::F32, &gen));
  if (dt == DType::F64) {
    for (auto* m : {static_cast<nn::Module*>(r.conv.get()), static_cast<nn::Module*>(r.bn.get())}) {
      for (const char* n : {"weight", "bias"}) {
        Tensor t = m->param(n).detach().to(DType::F64);
        t.set_requires_grad();
        m->set_param(n, t);
      }
    }
    for (const char* n : {"running_mean", "running_var"}) r.bn->set_buffer(n, r.bn->buffer(n).to(DType::F64));
  }
  return r;
}

std::shared_ptr<QuantedConvBN2D> identity_fold(const ConvBn& cb, int64_t freeze = -1) {
  return std::make_shared<QuantedConvBN2D>(cb.conv, std::make_shared<FoldedBatchNorm2D>(*cb.bn),
                                           std::make_shared<IdentityQuanter>(QuantRole::Weight),
                                           std::make_shared<IdentityQuanter>(QuantRole::Activation), freeze);
}

}  // namespace

TEST(ConvBnFold, FoldedWeightAndBiasFollowTheFormula) {
  ConvBn cb = make_conv_bn(3, 4, 11);
  auto q = identity_fold(cb);
  const auto w = cb.conv->weight().to_vector<double>(), b = cb.conv->bias().to_vector<double>();
  const auto g = cb.bn->param("weight").to_vector<double>(), beta = cb.bn->param("bias").to_vector<double>();
  const auto mu = cb.bn->buffer("running_mean").to_vector<double>(),
             var = cb.bn->buffer("running_var").to_vector<double>();
  std::vector<double> wf(w.size()), bf(4);
  for (size_t i = 0; i < w.size(); ++i) {
    const size_t c = i / 27;
    wf[i] = w[i] * g[c] / std::sqrt(var[c] + 1e-5);
  }
  for (size_t c = 0; c < 4; ++c) bf[c] = beta[c] + (b[c] - mu[c]) * g[c] / std::sqrt(var[c] + 1e-5);
  EXPECT_TRUE(AllClose(q->folded_weight(), from_vector<double>(wf, {4, 3, 3, 3}).to(DType::F32), 1e-6, 1e-7));
  EXPECT_TRUE(AllClose(q->folded_bias(), from_vector<double>(bf, {4}).to(DType::F32), 1e-6, 1e-7));
}

TEST(ConvBnFold, EvalEqualsConvThenBatchNorm) {
  ConvBn cb = make_conv_bn(3, 4, 12);
  auto q = identity_fold(cb);
  q->eval();
  cb.bn->eval();
  Tensor x = randn({2, 3, 5, 5});
  NoGradGuard no_grad;
  EXPECT_TRUE(AllClose((*q)(x), (*cb.bn)((*cb.conv)(x)), 1e-5, 1e-5));

  // With 8-bit quanters: conv(fq(x), fq(W f), folded bias) with the reference fake quantization.
  QuantConfig c;
  QuantedConvBN2D q8(cb.conv, std::make_shared<FoldedBatchNorm2D>(*cb.bn), c.default_weight().make(4),
                     c.default_activation().make(), -1);
  q8.eval();  // no training batch yet: the activation step follows the current input
  Tensor wf = q8.folded_weight();
  std::vector<float> sw;
  for (float m : channel_abs_max(wf)) sw.push_back(static_cast<float>(m / 127.0));
  Tensor want = conv2d(fq_ref(x, {static_cast<float>(abs_max(x) / 127.0)}, -128, 127), fq_ref(wf, sw, -127, 127),
                       q8.folded_bias(), cb.conv->conv_params());
  EXPECT_TRUE(AllClose(q8(x), want, 1e-5, 1e-5));
}

TEST(ConvBnFold, TrainingEqualsConvThenBatchNormAndUpdatesRunningStats) {
  ConvBn cb = make_conv_bn(3, 4, 13);
  ConvBn ref = make_conv_bn(3, 4, 13);  // identical copy
  auto q = identity_fold(cb);
  q->train();
  ref.bn->train();
  Tensor x = randn({4, 3, 5, 5}) * 2.0 + 0.5;
  Tensor y = (*q)(x), want = (*ref.bn)((*ref.conv)(x));
  EXPECT_TRUE(AllClose(y, want, 1e-4, 1e-5));
  EXPECT_TRUE(AllClose(cb.bn->buffer("running_mean"), ref.bn->buffer("running_mean"), 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(cb.bn->buffer("running_var"), ref.bn->buffer("running_var"), 1e-5, 1e-6));
  EXPECT_EQ(cb.bn->buffer("num_batches_tracked").item<int64_t>(), 1);
  EXPECT_EQ(q->qat_steps(), 1);
}

TEST(ConvBnFold, TrainingGradientsMatchFiniteDifferences) {
  ConvBn cb = make_conv_bn(2, 3, 14, DType::F64);
  auto q = identity_fold(cb);
  q->train();
  const Tensor rm0 = cb.bn->buffer("running_mean").clone(), rv0 = cb.bn->buffer("running_var").clone();
  Generator gen(5);
  Tensor x = randn({2, 2, 4, 4}, DType::F64, &gen);
  x.set_requires_grad();
  std::vector<Tensor> inputs = {x, cb.conv->param("weight"), cb.conv->param("bias"), cb.bn->param("weight"),
                                cb.bn->param("bias")};
  auto f = [&](const std::vector<Tensor>& in) {
    {
      NoGradGuard no_grad;
      cb.bn->buffer("running_mean").copy_(rm0);
      cb.bn->buffer("running_var").copy_(rv0);
    }
    return (*q)(in[0]);
  };
  GradcheckResult r = gradcheck(f, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(ConvBnFold, FreezesBatchStatisticsAfterNSteps) {
  ConvBn cb = make_conv_bn(3, 4, 15);
  auto q = identity_fold(cb, /*freeze=*/2);
  q->train();
  Tensor x = randn({4, 3, 5, 5}) + 1.0;
  for (int step = 0; step < 2; ++step) {
    Tensor before = cb.bn->buffer("running_mean").clone();
    (*q)(x);
    EXPECT_GT(max_abs_diff(before, cb.bn->buffer("running_mean")), 0.0) << "step " << step;
  }
  EXPECT_TRUE(q->bn_frozen());
  Tensor before = cb.bn->buffer("running_mean").clone();
  Tensor y = (*q)(x);  // frozen: running statistics, no update
  EXPECT_EQ(max_abs_diff(before, cb.bn->buffer("running_mean")), 0.0);
  EXPECT_EQ(q->qat_steps(), 3);
  NoGradGuard no_grad;
  cb.bn->eval();
  EXPECT_TRUE(AllClose(y, (*cb.bn)((*cb.conv)(x)), 1e-5, 1e-5));
}

TEST(ConvBnFold, ZeroGammaChannelStaysFinite) {
  ConvBn cb = make_conv_bn(3, 4, 16);
  {
    NoGradGuard no_grad;
    Tensor g = cb.bn->param("weight");
    g.copy_(tensor({0.0, 1.0, 0.5, 2.0}, {4}));
  }
  QuantConfig c;
  QuantedConvBN2D q(cb.conv, std::make_shared<FoldedBatchNorm2D>(*cb.bn), c.default_weight().make(4),
                    c.default_activation().make(), -1);
  q.train();
  Tensor y = q(randn({2, 3, 4, 4}));
  const auto v = y.to_vector<float>();
  const float beta0 = cb.bn->param("bias").to_vector<float>()[0];
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_TRUE(std::isfinite(v[i])) << i;
    if ((i / 16) % 4 == 0) {
      EXPECT_FLOAT_EQ(v[i], beta0);
    }
  }
}

TEST(ConvBnFold, QuantAwareFoldsConvBnPairsInChildOrder) {
  auto model = models::create_model("resnet20");
  const auto before = as_map(model->named_parameters());
  const auto buffers_before = as_map(model->named_buffers());
  QuantSettings s;
  s.fold_bn = true;
  s.freeze_bn_after_steps = 5;
  auto plan = plan_quant_aware(*model, QuantConfig(s));
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan[0].name, "conv1");
  EXPECT_EQ(plan[0].folded_bn, "bn1");
  quant_aware(*model, QuantConfig(s));
  EXPECT_EQ(count_type(*model, "QuantedConvBN2D"), 21);
  EXPECT_EQ(count_type(*model, "FoldedBatchNorm2D"), 21);
  EXPECT_EQ(count_type(*model, "BatchNorm2D"), 0);
  EXPECT_EQ(model->get_submodule("layers.3.short.1")->type_name(), "FoldedBatchNorm2D");
  auto& c1 = dynamic_cast<QuantedConvBN2D&>(*model->get_submodule("layers.0.conv1"));
  EXPECT_EQ(c1.freeze_bn_after_steps(), 5);
  const auto after = as_map(model->named_parameters());
  EXPECT_EQ(after.size(), before.size());
  for (const auto& [name, t] : before) {
    ASSERT_TRUE(after.count(name)) << name;
    EXPECT_TRUE(after.at(name).is_same(t)) << name;
  }
  const auto buffers_after = as_map(model->named_buffers());
  for (const auto& [name, t] : buffers_before) {
    ASSERT_TRUE(buffers_after.count(name)) << name;
    EXPECT_TRUE(buffers_after.at(name).is_same(t)) << name;
  }
}

// ---- convert ----

TEST(Convert, LeNetMatchesTheQatModelExactly) {
  manual_seed(4);
  models::LeNet5 net;
  quant_aware(net, QuantConfig());
  expect_error([&] { convert(net); }, {"convert: layer 'conv1'", "no statistics"});
  Generator gen(8);
  Tensor x = randn({16, 1, 28, 28}, DType::F32, &gen);
  train_steps(net, x, randint(0, 10, {16}, DType::I64, &gen), 3);
  Tensor want = eval_forward(net, x);
  convert(net);
  EXPECT_EQ(net.child("conv1").type_name(), "ConvertedConv2D");
  EXPECT_EQ(net.child("fc3").type_name(), "ConvertedLinear");
  EXPECT_EQ(net.child("conv1").buffer("weight").dtype(), DType::I8);
  EXPECT_EQ(net.child("conv1").buffer("weight_scale").shape(), (Shape{6}));
  EXPECT_TRUE(net.parameters().empty());
  Tensor got = eval_forward(net, x);
  EXPECT_EQ(max_abs_diff(got, want), 0.0);
  EXPECT_EQ(top1(got), top1(want));
  // Integers lie on the narrow grid and dequantize to the stored steps.
  for (int8_t v : net.child("fc1").buffer("weight").to_vector<int8_t>()) EXPECT_GE(v, -127);
  expect_error([&] { convert(net); }, {"no QAT layers", "already converted"});
}

TEST(Convert, BitsChooseTheIntegerDtype) {
  manual_seed(5);
  for (int bits : {4, 16}) {
    models::LeNet5 net;
    QuantSettings s;
    s.weight_bits = bits;
    quant_aware(net, QuantConfig(s));
    Generator gen(9);
    Tensor x = randn({4, 1, 28, 28}, DType::F32, &gen);
    train_steps(net, x, randint(0, 10, {4}, DType::I64, &gen), 1);
    Tensor want = eval_forward(net, x);
    convert(net);
    Tensor w = net.child("conv2").buffer("weight");
    EXPECT_EQ(w.dtype(), bits == 4 ? DType::I8 : DType::I16);
    if (bits == 4) {
      for (int8_t v : w.to_vector<int8_t>()) EXPECT_TRUE(v >= -7 && v <= 7) << int(v);
    }
    EXPECT_EQ(max_abs_diff(eval_forward(net, x), want), 0.0) << bits;
  }
}

TEST(Convert, ResNet20WithFoldedBnSaveLoadRoundTrip) {
  manual_seed(6);
  set_num_threads(2);
  auto model = models::create_model("resnet20");
  QuantSettings s;
  s.fold_bn = true;
  s.freeze_bn_after_steps = 2;
  const QuantConfig config(s);
  quant_aware(*model, config);
  Generator gen(10);
  Tensor x = randn({8, 1, 16, 16}, DType::F32, &gen);
  train_steps(*model, x, randint(0, 10, {8}, DType::I64, &gen), 3, 0.01);
  Tensor want = eval_forward(*model, x);
  convert(*model);
  EXPECT_EQ(model->get_submodule("bn1")->type_name(), "Identity");
  EXPECT_EQ(model->get_submodule("conv1")->type_name(), "ConvertedConv2D");
  Tensor got = eval_forward(*model, x);
  EXPECT_EQ(max_abs_diff(got, want), 0.0);
  EXPECT_EQ(top1(got), top1(want));

  const std::string path = temp_path("resnet20_fold.safetensors");
  save_converted(path, *model, config, "resnet20");
  nn::ModulePtr loaded = load_converted(path);
  EXPECT_EQ(loaded->get_submodule("bn1")->type_name(), "Identity");
  EXPECT_EQ(max_abs_diff(eval_forward(*loaded, x), got), 0.0);
  const auto meta = converted_metadata(path);
  EXPECT_EQ(meta.at("format"), "qslim-int8");
  EXPECT_EQ(meta.at("model"), "resnet20");
  EXPECT_NE(meta.at("layers").find("\"folded_bn\":\"bn1\""), std::string::npos);
  std::remove(path.c_str());
}

TEST(Convert, ConvertedFileIsAboutAQuarterOfFp32) {
  manual_seed(7);
  auto model = models::create_model("resnet20");
  const std::string fp32 = temp_path("resnet20_fp32.safetensors"), int8 = temp_path("resnet20_int8.safetensors");
  nn::save_module(fp32, *model);
  const QuantConfig config;
  quant_aware(*model, config);
  Generator gen(11);
  Tensor x = randn({4, 1, 16, 16}, DType::F32, &gen);
  train_steps(*model, x, randint(0, 10, {4}, DType::I64, &gen), 1, 0.01);
  Tensor want = eval_forward(*model, x);
  convert(*model);
  save_converted(int8, *model, config, "resnet20");
  const double ratio = static_cast<double>(std::filesystem::file_size(int8)) / std::filesystem::file_size(fp32);
  RecordProperty("size_ratio", std::to_string(ratio));
  EXPECT_GT(ratio, 0.22);
  EXPECT_LT(ratio, 0.29) << std::filesystem::file_size(int8) << " vs " << std::filesystem::file_size(fp32);

  nn::ModulePtr loaded = load_converted(int8);
  EXPECT_EQ(max_abs_diff(eval_forward(*loaded, x), want), 0.0);

  // An INT8 file is no float checkpoint, and a float checkpoint is no INT8 file.
  auto float_model = models::create_model("resnet20");
  expect_error([&] { nn::load_module(int8, *float_model); }, {int8.c_str(), "is a quantized model (qslim-int8)", "load_converted"});
  expect_error([&] { load_converted(fp32); }, {fp32.c_str(), "not a qslim-int8", "format missing"});
  std::remove(fp32.c_str());
  std::remove(int8.c_str());
}

TEST(Convert, FullQuantizeWrapsAddAndPoolingAndRoundTrips) {
  manual_seed(8);
  auto model = models::create_model("resnet8");
  QuantSettings s;
  s.is_full_quantize = true;
  const QuantConfig config(s);
  quant_aware(*model, config);
  EXPECT_EQ(model->get_submodule("layers.0.add")->type_name(), "QuantedAdd");
  auto& add = dynamic_cast<QuantedOp&>(*model->get_submodule("layers.0.add"));
  EXPECT_EQ(add.num_quanters(), 2u);
  EXPECT_EQ(model->get_submodule("pool")->type_name(), "QuantedAdaptiveAvgPool2D");
  EXPECT_EQ(model->get_submodule("relu1")->type_name(), "QuantedReLU");
  Generator gen(12);
  Tensor x = randn({4, 1, 12, 12}, DType::F32, &gen);
  train_steps(*model, x, randint(0, 10, {4}, DType::I64, &gen), 2, 0.01);
  Tensor want = eval_forward(*model, x);
  convert(*model);
  auto& cadd = dynamic_cast<ConvertedOp&>(*model->get_submodule("layers.0.add"));
  EXPECT_EQ(cadd.num_points(), 2u);
  EXPECT_TRUE(cadd.has_buffer("input_1_scale"));
  EXPECT_EQ(max_abs_diff(eval_forward(*model, x), want), 0.0);
  expect_error([&] { cadd(std::vector<Tensor>{x, x, x}); }, {"expected 2 inputs"});

  const std::string path = temp_path("resnet8_full.safetensors");
  save_converted(path, *model, config, "resnet8");
  EXPECT_EQ(max_abs_diff(eval_forward(*load_converted(path), x), want), 0.0);
  std::remove(path.c_str());
}

namespace {
// Two conv branches joined by a Concat module.
struct ConcatNet : nn::Module {
  ConcatNet() {
    register_module("a", std::make_shared<nn::Conv2D>(1, 2, 3, 1, 1));
    register_module("b", std::make_shared<nn::Conv2D>(1, 3, 1));
    register_module("cat", std::make_shared<nn::Concat>(1));
  }
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override { return child("cat")(child("a")(x), child("b")(x)); }
  std::string type_name() const override { return "ConcatNet"; }
};
}  // namespace

TEST(Convert, ConcatQuantizesItsOutputWithOneStep) {
  manual_seed(9);
  ConcatNet net;
  QuantSettings s;
  s.quantize_op_types = {"concat", "conv2d"};
  quant_aware(net, QuantConfig(s));
  auto& cat = dynamic_cast<QuantedOp&>(net.child("cat"));
  EXPECT_EQ(cat.type_name(), "QuantedConcat");
  EXPECT_EQ(cat.point(), OpQuantPoint::Output);
  net.train();
  Tensor x = randn({2, 1, 5, 5});
  Tensor y = net(x);
  // The output lies on one grid: every value is an integer multiple of the concat's step.
  const double step = cat.quanter(0).quant_params().scales()[0];
  for (float v : y.to_vector<float>()) EXPECT_NEAR(v / step, std::nearbyint(v / step), 1e-3);
  Tensor want = eval_forward(net, x);
  convert(net);
  EXPECT_TRUE(net.child("cat").has_buffer("output_scale"));
  EXPECT_EQ(max_abs_diff(eval_forward(net, x), want), 0.0);
}

TEST(Convert, LearnableQuantersTrainAndConvert) {
  manual_seed(10);
  models::LeNet5 net;
  QuantConfig config = QuantConfig::from_json(
      R"({"weight_quantize_type": "lsq_plus", "activation_quantize_type": "lsq_plus", "lsq_per_channel": true})");
  quant_aware(net, config);
  const auto params = as_map(net.named_parameters());
  EXPECT_TRUE(params.count("conv1.weight_quanter.step"));
  EXPECT_TRUE(params.count("conv1.activation_quanter.beta"));
  Generator gen(13);
  Tensor x = randn({16, 1, 28, 28}, DType::F32, &gen);
  Tensor step_before = params.at("fc1.weight_quanter.step").clone();
  std::vector<double> losses = train_steps(net, x, randint(0, 10, {16}, DType::I64, &gen), 4, 0.01);
  EXPECT_GT(max_abs_diff(step_before, params.at("fc1.weight_quanter.step")), 0.0);  // the optimizer moved it
  Tensor want = eval_forward(net, x);
  convert(net);
  Tensor got = eval_forward(net, x);
  // LSQ+ offsets become integer zero points: agreement up to that rounding.
  EXPECT_EQ(top1(got), top1(want));
  EXPECT_TRUE(AllClose(got, want, 0.05, 0.05 * abs_max(want)));
}

TEST(Convert, QatCheckpointRoundTrip) {
  manual_seed(12);
  auto model = models::create_model("resnet8");
  QuantSettings s;
  s.fold_bn = true;
  s.freeze_bn_after_steps = 1;
  quant_aware(*model, QuantConfig(s));
  Generator gen(15);
  Tensor x = randn({4, 1, 12, 12}, DType::F32, &gen);
  train_steps(*model, x, randint(0, 10, {4}, DType::I64, &gen), 2, 0.01);
  const nn::NamedTensors state = model->state_dict();
  Tensor want = eval_forward(*model, x);

  manual_seed(99);  // different float initialisation
  auto resumed = models::create_model("resnet8");
  quant_aware(*resumed, QuantConfig(s));
  resumed->load_state_dict(state);
  EXPECT_EQ(max_abs_diff(eval_forward(*resumed, x), want), 0.0);
  EXPECT_TRUE(dynamic_cast<QuantedConvBN2D&>(*resumed->get_submodule("conv1")).bn_frozen());
}

// Folding relies on a BatchNorm2D that follows its conv in child order being applied to that
// conv's output. With 16-bit quantization every zoo model must stay close to its float output,
// and its converted form must round-trip through a file.
TEST(Convert, ZooModelsFoldFullQuantizeConvertAndReload) {
  set_num_threads(2);
  for (const char* spec : {"resnet8", "resnet18:width=0.25", "mobilenet_v1:width=0.25", "mobilenet_v2:width=0.25",
                           "mobilenet_v3_small:width=0.25", "vgg11:width=0.125", "googlenet:width=0.25"}) {
    SCOPED_TRACE(spec);
    manual_seed(13);
    auto model = models::create_model(spec);
    Generator gen(16);
    {
      NoGradGuard no_grad;
      for (const auto& [name, m] : model->named_modules()) {
        if (m->type_name() != "BatchNorm2D") continue;
        const int64_t c = m->buffer("running_mean").numel();
        m->buffer("running_mean").copy_(randn({c}, DType::F32, &gen) * 0.1);
        m->buffer("running_var").copy_(uniform({c}, 0.5, 1.5, DType::F32, &gen));
        m->param("weight").copy_(uniform({c}, 0.5, 1.5, DType::F32, &gen));
        m->param("bias").copy_(randn({c}, DType::F32, &gen) * 0.1);
      }
    }
    Tensor x = randn({2, 1, 32, 32}, DType::F32, &gen);
    Tensor want = eval_forward(*model, x);
    QuantSettings s;
    s.fold_bn = true;
    s.freeze_bn_after_steps = 0;  // keep the running statistics while collecting activation ranges
    s.is_full_quantize = true;
    s.weight_bits = s.activation_bits = 16;
    const QuantConfig config(s);
    quant_aware(*model, config);
    EXPECT_EQ(count_type(*model, "BatchNorm2D"), 0);
    {
      NoGradGuard no_grad;
      model->train();
      (*model)(x);  // activation statistics
    }
    Tensor qat = eval_forward(*model, x);
    EXPECT_LT(max_abs_diff(qat, want), 1e-2 * (abs_max(want) + 1e-3));
    convert(*model);
    Tensor converted = eval_forward(*model, x);
    EXPECT_EQ(max_abs_diff(converted, qat), 0.0);
    const std::string path = temp_path("zoo.safetensors");
    save_converted(path, *model, config, spec);
    EXPECT_EQ(max_abs_diff(eval_forward(*load_converted(path), x), converted), 0.0);
    std::remove(path.c_str());
  }
}

// ---- errors ----

TEST(Convert, ErrorCases) {
  models::LeNet5 plain;
  expect_error([&] { convert(plain); }, {"no QAT layers", "quant_aware first"});
  expect_error([&] { save_converted(temp_path("x"), plain, QuantConfig(), "lenet"); }, {"no converted layers"});

  models::LeNet5 qat;
  quant_aware(qat, QuantConfig());
  expect_error([&] { save_converted(temp_path("x"), qat, QuantConfig(), "lenet"); }, {"not converted", "conv1", "quant::convert"});

  manual_seed(11);
  auto model = models::create_model("lenet");
  quant_aware(*model, QuantConfig());
  Generator gen(14);
  Tensor x = randn({4, 1, 28, 28}, DType::F32, &gen);
  train_steps(*model, x, randint(0, 10, {4}, DType::I64, &gen), 1);
  convert(*model);
  expect_error([&] { save_converted(temp_path("x"), *model, QuantConfig(), "resnet8"); }, {"resnet8", "not in model"});
  expect_error([&] { save_converted(temp_path("x"), *model, QuantConfig(), "lenet:num_classes=5"); }, {"fc3"});

  const std::string path = temp_path("lenet_int8.safetensors");
  save_converted(path, *model, QuantConfig(), "lenet");
  const nn::LoadedTensors good = nn::load_tensors(path);
  auto write_with = [&](const std::string& key, const std::string& value) {
    auto meta = good.metadata;
    if (value.empty())
      meta.erase(key);
    else
      meta[key] = value;
    nn::save_tensors(path + ".bad", good.tensors, meta);
    return path + ".bad";
  };
  expect_error([&] { load_converted(write_with("model", "resnet8")); }, {"resnet8", "layer 'conv2'", "not in model"});
  expect_error([&] { load_converted(write_with("model", "lenet:num_classes=5")); }, {"tensors do not fit", "fc3"});
  expect_error([&] { load_converted(write_with("layers", "")); }, {"no 'layers'"});
  expect_error([&] { load_converted(write_with("layers", "[{\"name\": \"conv9\"}]")); }, {"conv9"});
  expect_error([&] { load_converted(write_with("format", "qslim-fp32")); }, {"not a qslim-int8", "qslim-fp32"});
  expect_error([&] { load_converted(write_with("format_version", "3")); }, {"format_version '3'", "allowed: 1, 2"});
  // Version 2 keeps per-tensor steps only in the metadata; per-channel steps stay tensors.
  std::set<std::string> names;
  for (const auto& [name, t] : good.tensors) names.insert(name);
  EXPECT_FALSE(names.count("conv1.input_scale") || names.count("conv1.input_zero_point"));
  EXPECT_TRUE(names.count("conv1.weight_scale"));
  std::string layers = good.metadata.at("layers");
  const size_t pos = layers.find("\"s\":") + 4;
  std::string negative = layers;
  negative.insert(pos, "-");
  expect_error([&] { load_converted(write_with("layers", negative)); }, {"conv1", "step size s must be a positive number"});
  std::string far_zero = layers;
  far_zero.replace(far_zero.find("\"z\":0"), 5, "\"z\":300");
  expect_error([&] { load_converted(write_with("layers", far_zero)); }, {"conv1", "zero point 300 lies outside"});
  // A version-1 file also stores them as tensors, and the two must agree.
  auto meta_v1 = good.metadata;
  meta_v1["format_version"] = "1";
  nn::save_tensors(path + ".v1", model->state_dict(), meta_v1);
  EXPECT_EQ(max_abs_diff(eval_forward(*load_converted(path + ".v1"), x), eval_forward(*model, x)), 0.0);
  layers.insert(pos, "1");  // a different step size for conv1's input
  meta_v1["layers"] = layers;
  nn::save_tensors(path + ".v1", model->state_dict(), meta_v1);
  expect_error([&] { load_converted(path + ".v1"); }, {"conv1", "disagree"});
  std::remove((path + ".v1").c_str());
  std::string wrong_type = good.metadata.at("layers");
  wrong_type.replace(wrong_type.find("\"source\":\"Conv2D\""), 17, "\"source\":\"Linear\"");
  expect_error([&] { load_converted(write_with("layers", wrong_type)); }, {"conv1", "Linear", "Conv2D"});
  std::remove(path.c_str());
  std::remove((path + ".bad").c_str());
}
