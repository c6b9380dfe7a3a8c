#include "tools/bench_models.h"

#include "autograd/ops.h"
#include "models/registry.h"
#include "nn/optim/sgd.h"
#include "quant/qat.h"
#include "quant/quant_config.h"
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

}  // namespace qslim::tools
