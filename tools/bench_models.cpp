#include "tools/bench_models.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "autograd/ops.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "nn/optim/sgd.h"
#include "quant/int8_engine.h"
#include "quant/converted_bn_fold.h"
#include "quant/qat.h"
#include "quant/quant_config.h"
#include "quant/quantized_io.h"
#include "tools/timing.h"

namespace qslim::tools {

ModelFigure bench_model(const std::string& spec, int steps, bool qat) {
  manual_seed(0);
  nn::ModulePtr model = models::create_model(spec);
  if (qat) quant::quant_aware(*model, quant::QuantConfig());
  optim::GroupOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  o.weight_decay = 5e-4;
  optim::SGD opt(model->parameters(), o);
  Tensor x = randn({128, 1, 28, 28}), y = randint(0, 10, {128});
  model->train();
  double t_train = median_seconds(
      [&] {
        Tensor loss = cross_entropy((*model)(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
      },
      steps, 5);
  model->eval();
  Tensor xb = randn({256, 1, 28, 28}), x1 = randn({1, 1, 28, 28});
  NoGradGuard no_grad;
  double t_b256 = median_seconds([&] { (*model)(xb); }, 10, 3);
  double t_b1 = median_seconds([&] { (*model)(x1); }, 200, 20);
  ModelFigure f;
  f.model = models::ModelArgs::parse(spec).name();
  f.train_img_s = 128 / t_train;
  f.infer_img_s_bs256 = 256 / t_b256;
  f.latency_ms_bs1 = 1000 * t_b1;
  return f;
}

namespace {

std::vector<int64_t> row_argmax(const Tensor& logits) {
  const auto v = logits.to_vector<float>();
  const int64_t n = logits.size(0), k = logits.size(1);
  std::vector<int64_t> out(n);
  for (int64_t i = 0; i < n; ++i)
    out[i] = std::max_element(v.begin() + i * k, v.begin() + (i + 1) * k) - (v.begin() + i * k);
  return out;
}

double file_bytes_of(const std::string& path) {
  const double b = static_cast<double>(std::filesystem::file_size(path));
  std::filesystem::remove(path);
  return b;
}

}  // namespace

Int8Figure bench_int8_model(const std::string& spec, const std::string& checkpoint, bool profile) {
  manual_seed(0);
  nn::ModulePtr model = models::create_model(spec);
  if (!checkpoint.empty()) nn::load_module(checkpoint, *model);
  Int8Figure f;
  f.model = models::ModelArgs::parse(spec).name();
  const std::string tmp = (std::filesystem::temp_directory_path() /
                           ("qslim_bench_int8_" + std::to_string(getpid()) + "_" + f.model + ".safetensors"))
                              .string();
  nn::save_module(tmp, *model);
  f.fp32_file_bytes = file_bytes_of(tmp);

  Tensor xb = randn({256, 1, 28, 28}), x1 = randn({1, 1, 28, 28});
  model->eval();
  {
    NoGradGuard no_grad;
    const double t256 = median_seconds([&] { (*model)(xb); }, 10, 3);
    const double t1 = median_seconds([&] { (*model)(x1); }, 200, 20);
    f.fp32_img_s_bs256 = 256 / t256;
    f.fp32_latency_ms_bs1 = 1000 * t1;
  }

  const quant::QuantConfig config;
  quant::quant_aware(*model, config);
  {
    NoGradGuard no_grad;
    model->train();
    for (auto& [name, m] : model->named_modules())
      if (m->type_name() == "BatchNorm2D") m->eval();
    for (int i = 0; i < 4; ++i) (*model)(randn({64, 1, 28, 28}));
  }
  quant::convert(*model);
  model->eval();
  quant::fold_converted_batch_norms(*model, randn({2, 1, 28, 28}));  // as qslim qat saves it
  quant::save_converted(tmp, *model, config, spec);
  f.int8_file_bytes = file_bytes_of(tmp);

  quant::Int8Engine engine(model, {1, 28, 28});
  const double t256 = median_seconds([&] { engine.run(xb); }, 10, 3);
  const double t1 = median_seconds([&] { engine.run(x1); }, 200, 20);
  f.int8_img_s_bs256 = 256 / t256;
  f.int8_latency_ms_bs1 = 1000 * t1;
  if (profile) {
    const int64_t tile = engine.tile() > 0 ? std::min<int64_t>(engine.tile(), 256) : 256;
    f.profile_tile = tile;
    f.profile = engine.profile(xb.narrow(0, 0, tile), 9);
    f.profile_bs1 = engine.profile(x1, 51);
  }
  NoGradGuard no_grad;
  const auto a = row_argmax(engine.run(xb)), b = row_argmax((*model)(xb));
  int64_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  f.top1_agreement = 100.0 * same / static_cast<double>(a.size());
  return f;
}

}  // namespace qslim::tools
