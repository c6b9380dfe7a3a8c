// qslim train: train a zoo model on Fashion-MNIST, report test accuracy per epoch, checkpoint per epoch.
#include <cstdio>

#include "core/parallel.h"
#include "core/random.h"
#include "data/fashion_mnist.h"
#include "models/registry.h"
#include "tools/commands.h"
#include "tools/peak_rss.h"
#include "tools/progress.h"
#include "train/trainer.h"

namespace qslim::tools {

namespace {
struct TrainArgs {
  train::TrainConfig config;
  int threads = 0;
  std::string data_dir;
  int64_t limit = -1;
};

void run_train(TrainArgs a) {
  train::TrainConfig& c = a.config;
  train::validate(c);
  set_num_threads(a.threads);
  manual_seed(c.seed);
  auto model = models::create_model(c.model);
  auto train_set = data::load_fashion_mnist(true, a.data_dir, a.limit);
  auto test_set = data::load_fashion_mnist(false, a.data_dir, a.limit);
  std::printf("training %s (%lld parameters) on Fashion-MNIST: %lld train / %lld test images, %d epochs, "
              "batch %lld, %s lr %g, %s schedule, %d threads\n",
              c.model.c_str(), static_cast<long long>(model->num_parameters()),
              static_cast<long long>(train_set->size()), static_cast<long long>(test_set->size()), c.epochs,
              static_cast<long long>(c.batch_size), c.optimizer.c_str(), c.lr, c.schedule.c_str(), num_threads());
  Progress progress;
  train::TrainCallbacks cb;
  cb.on_batch = [&](const train::BatchProgress& p) {
    char pre[64], suf[128];
    std::snprintf(pre, sizeof pre, "epoch %d/%d", p.epoch, p.epochs);
    std::snprintf(suf, sizeof suf, "loss %.4f  %.0f img/s  ETA %s", p.loss, p.images_per_s,
                  format_duration(p.eta_seconds).c_str());
    progress.update(pre, p.batch, p.batches, suf);
  };
  cb.on_epoch = [&](const train::EpochReport& r) {
    progress.finish();
    std::printf("epoch %2d/%d  loss %.4f  train top-1 %6.2f%%  test top-1 %6.2f%%  top-5 %6.2f%%  lr %.5f  "
                "%6.0f img/s  %5.1fs\n",
                r.epoch, c.epochs, r.train_loss, r.train_top1, r.test.top1, r.test.top5, r.lr, r.images_per_s,
                r.seconds);
    std::fflush(stdout);
  };
  auto reports = train::fit(*model, train_set, test_set, c, cb);
  double total = 0;
  for (const auto& r : reports) total += r.seconds;
  const auto& last = reports.back();
  std::printf("final: %s test top-1 %.2f%% top-5 %.2f%% after %d epochs (%s training, peak RSS %.0f MiB)%s%s\n",
              c.model.c_str(), last.test.top1, last.test.top5, c.epochs, format_duration(total).c_str(),
              peak_rss_mib(), c.out_dir.empty() ? "" : ", checkpoint ",
              c.out_dir.empty() ? "" : (c.out_dir + "/model.safetensors").c_str());
}
}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  train::TrainConfig& c = a->config;
  CLI::App* cmd = app.add_subcommand("train", "Train a model on Fashion-MNIST");
  cmd->add_option("--model", c.model, "Model spec, e.g. lenet or lenet:num_classes=10")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "Epochs")->capture_default_str();
  cmd->add_option("--lr", c.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--batch-size", c.batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--optimizer", c.optimizer, "sgd | adam | adamw")->capture_default_str();
  cmd->add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay", c.weight_decay, "Weight decay")->capture_default_str();
  cmd->add_option("--schedule", c.schedule, "cosine | step | constant")->capture_default_str();
  cmd->add_option("--warmup-epochs", c.warmup_epochs, "Linear warm-up epochs")->capture_default_str();
  cmd->add_option("--label-smoothing", c.label_smoothing, "Label smoothing")->capture_default_str();
  cmd->add_flag("--augment", c.augment, "Random crop (padding 2) and horizontal flip");
  cmd->add_option("--seed", c.seed, "Seed for initialisation, shuffling and augmentation")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (default: QSLIM_NUM_THREADS or all cores)");
  cmd->add_option("--out", c.out_dir, "Directory for model.safetensors and metrics.jsonl");
  cmd->add_option("--data-dir", a->data_dir, "Fashion-MNIST directory (default: $QSLIM_FASHION_MNIST or "
                                             "/usr/share/datasets/fashion-mnist)");
  cmd->add_option("--limit", a->limit, "Use only the first N training and test images");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace qslim::tools
