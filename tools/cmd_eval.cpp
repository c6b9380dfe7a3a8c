// qslim eval: evaluate a checkpoint on the Fashion-MNIST test set.
#include <cstdio>

#include "core/parallel.h"
#include "data/fashion_mnist.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "tools/commands.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
struct EvalArgs {
  std::string checkpoint, model, data_dir;
  int threads = 0;
  int64_t limit = -1;
};

void run_eval(const EvalArgs& a) {
  set_num_threads(a.threads);
  auto loaded = nn::load_tensors(a.checkpoint);
  std::string spec = a.model;
  if (spec.empty()) {
    auto it = loaded.metadata.find("model");
    QSLIM_CHECK(it != loaded.metadata.end(), a.checkpoint,
                ": no 'model' entry in the checkpoint metadata; pass --model to say which network it holds");
    spec = it->second;
  }
  auto model = models::create_model(spec);
  try {
    model->load_state_dict(loaded.tensors, true);
  } catch (const Error& e) {
    QSLIM_FAIL(a.checkpoint, ": does not fit model '", spec, "': ", e.what());
  }
  auto test_set = data::load_fashion_mnist(false, a.data_dir, a.limit);
  train::TrainConfig defaults;
  auto r = train::evaluate(*model, test_set, defaults.mean, defaults.std);
  std::printf("%s (%s): test top-1 %.2f%%  top-5 %.2f%%  loss %.4f  on %lld images\n", a.checkpoint.c_str(),
              spec.c_str(), r.top1, r.top5, r.loss, static_cast<long long>(r.samples));
}
}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on the Fashion-MNIST test set");
  cmd->add_option("--checkpoint", a->checkpoint, "A .safetensors checkpoint written by qslim train")->required();
  cmd->add_option("--model", a->model, "Model spec (default: the one recorded in the checkpoint)");
  cmd->add_option("--data-dir", a->data_dir, "Fashion-MNIST directory");
  cmd->add_option("--threads", a->threads, "Threads");
  cmd->add_option("--limit", a->limit, "Evaluate only the first N test images");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace qslim::tools
