#include "train/trainer.h"

#include <chrono>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/ops.h"
#include "core/parallel.h"
#include "core/random.h"
#include "data/dataloader.h"
#include "data/transforms.h"
#include "nn/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "train/metrics.h"
#include "train/plot_svg.h"
#include "train/recipe.h"
#include "train/train_state.h"

namespace qslim::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params) {
  optim::GroupOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  if (c.optimizer == "sgd") {
    o.momentum = c.momentum;
    o.nesterov = c.nesterov;
    return std::make_unique<optim::SGD>(std::move(params), o);
  }
  if (c.optimizer == "adam") return std::make_unique<optim::Adam>(std::move(params), o);
  return std::make_unique<optim::AdamW>(std::move(params), o);
}

std::unique_ptr<optim::LRScheduler> make_schedule(const TrainConfig& c, optim::Optimizer& opt, int64_t steps_per_epoch) {
  int64_t total = steps_per_epoch * c.epochs;
  int64_t warmup = static_cast<int64_t>(std::llround(c.warmup_epochs * steps_per_epoch));
  if (c.schedule == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, total, warmup);
  if (c.schedule == "step") return std::make_unique<optim::StepLR>(opt, c.step_size_epochs * steps_per_epoch, c.gamma);
  return std::make_unique<optim::StepLR>(opt, total + 1, 1.0);  // constant
}

data::TransformPtr make_transform(const TrainConfig& c, const Shape& image_shape, bool train) {
  std::vector<data::TransformPtr> ts;
  if (train && c.augment) {
    if (c.crop_padding > 0)
      ts.push_back(std::make_shared<data::RandomCrop>(image_shape[1], image_shape[2], c.crop_padding));
    if (c.flip) ts.push_back(std::make_shared<data::RandomHorizontalFlip>(0.5));
  }
  ts.push_back(std::make_shared<data::Normalize>(c.mean, c.std));
  return std::make_shared<data::Compose>(ts);
}

// Puts the state saved after some epoch back into the model, optimizer, scheduler and global generator.
TrainState restore(const TrainConfig& c, nn::Module& model, optim::Optimizer& opt, optim::LRScheduler& sched,
                   int64_t train_examples) {
  const std::string& path = c.resume_from;
  TrainState s = load_train_state(path);
  TrainConfig saved;
  apply_recipe_json(s.config_json, "training state " + path + " config", saved);
  QSLIM_CHECK(saved.model == c.model, "resume: ", path, " holds model '", saved.model, "' but this run trains '",
              c.model, "'");
  QSLIM_CHECK(s.train_examples == train_examples, "resume: ", path, " was trained on ", s.train_examples,
              " training examples but this run has ", train_examples, " (use the same dataset and limit)");
  try {
    model.load_state_dict(s.model, true);
    opt.load_state(s.optimizer);
    sched.load_state(s.scheduler);
    global_generator().set_state(s.generator_state);
  } catch (const Error& e) {
    QSLIM_FAIL("resume: ", path, ": ", e.what());
  }
  // The saved hyperparameters of the optimizer would otherwise shadow an edited configuration.
  for (size_t g = 0; g < opt.num_groups(); ++g) {
    optim::GroupOptions& o = opt.options(g);
    o.weight_decay = c.weight_decay;
    if (c.optimizer == "sgd") o.momentum = c.momentum, o.nesterov = c.nesterov;
  }
  return s;
}

void save_epoch(const TrainConfig& c, nn::Module& model, const optim::Optimizer& opt, const optim::LRScheduler& sched,
                const std::vector<EpochReport>& history, int64_t train_examples) {
  namespace fs = std::filesystem;
  const EpochReport& last = history.back();
  nn::save_module((fs::path(c.out_dir) / kModelFile).string(), model, model_metadata(c, last.epoch, last.test));
  TrainState s;
  s.epoch = last.epoch;
  s.config_json = config_to_json(c);
  s.generator_state = global_generator().state();
  s.threads = num_threads();
  s.limit = c.limit;
  s.train_examples = train_examples;
  s.history = history;
  s.model = model.state_dict();
  s.optimizer = opt.state();
  s.scheduler = sched.state();
  save_train_state((fs::path(c.out_dir) / kTrainStateFile).string(), s);
  write_training_curves_svg((fs::path(c.out_dir) / "metrics.svg").string(), history, c.model + " on " + c.dataset);
}
}  // namespace

EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const std::vector<float>& mean,
                    const std::vector<float>& std, int64_t batch_size) {
  bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  data::DataLoaderOptions o;
  o.batch_size = batch_size;
  o.transform = std::make_shared<data::Normalize>(mean, std);
  data::DataLoader loader(dataset, o);
  EvalResult r;
  double loss_sum = 0;
  int64_t c1 = 0, c5 = 0;
  for (data::Batch& b : loader) {
    Tensor logits = model(b.images);
    int64_t n = b.labels.size(0);
    loss_sum += cross_entropy(logits, b.labels).item() * n;
    c1 += count_topk_correct(logits, b.labels, 1);
    c5 += count_topk_correct(logits, b.labels, 5);
    r.samples += n;
  }
  model.train(was_training);
  if (r.samples > 0) {
    r.top1 = 100.0 * c1 / r.samples;
    r.top5 = 100.0 * c5 / r.samples;
    r.loss = loss_sum / r.samples;
  }
  return r;
}

std::vector<EpochReport> fit(nn::Module& model, std::shared_ptr<const data::Dataset> train_set,
                             std::shared_ptr<const data::Dataset> test_set, const TrainConfig& c,
                             const TrainCallbacks& cb) {
  validate(c);
  QSLIM_CHECK(train_set != nullptr && test_set != nullptr, "training: null dataset");
  QSLIM_CHECK(train_set->size() > 0, "training: the training set is empty");
  const Shape image_shape = train_set->get(0).image.shape();
  QSLIM_CHECK(image_shape.size() == 3, "training: expected images [C, H, W], got ", shape_str(image_shape));
  data::DataLoaderOptions lo;
  lo.batch_size = c.batch_size;
  lo.shuffle = true;
  lo.seed = c.seed;
  lo.drop_last = true;
  lo.prefetch = c.prefetch;
  lo.workers = c.workers;
  lo.transform = make_transform(c, image_shape, true);
  data::DataLoader loader(train_set, lo);
  // A fractional epoch runs the first batches of each shuffled epoch; the schedule spans only those.
  const int64_t batches = c.epoch_fraction < 1
                              ? std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c.epoch_fraction * loader.size())))
                              : loader.size();
  QSLIM_CHECK(loader.size() > 0, "training: the training set (", train_set->size(), " examples) is smaller than one batch of ",
              c.batch_size);
  auto opt = make_optimizer(c, model.parameters());
  auto sched = make_schedule(c, *opt, batches);

  std::vector<EpochReport> history;
  int start = 0;
  if (!c.resume_from.empty()) {
    history = restore(c, model, *opt, *sched, train_set->size()).history;
    start = static_cast<int>(history.size());
    loader.set_epoch(start);  // loader epochs count from 0: epoch `start + 1` is loader epoch `start`
  }
  std::ofstream log;
  if (!c.out_dir.empty()) {
    std::filesystem::create_directories(c.out_dir);
    const std::string log_path = c.out_dir + "/metrics.jsonl";
    log.open(log_path, std::ios::trunc);
    QSLIM_CHECK(log.good(), "training: cannot write ", log_path);
    for (const EpochReport& r : history) log << to_json_line(r) << "\n";
    log.flush();
  }
  const int last_epoch = c.stop_after_epoch > 0 ? std::min(c.epochs, c.stop_after_epoch) : c.epochs;
  auto run_start = Clock::now();
  int64_t images_done = 0;
  const int64_t images_total = batches * c.batch_size * std::max(0, last_epoch - start);
  for (int epoch = start + 1; epoch <= last_epoch; ++epoch) {
    model.train();
    auto t0 = Clock::now();
    const double cpu0 = process_cpu_seconds();
    double loss_sum = 0;
    int64_t correct1 = 0, correct5 = 0, seen = 0, b = 0;
    double lr = opt->lr();
    for (data::Batch& batch : loader) {
      if (b == batches) break;
      lr = opt->lr();
      Tensor logits = model(batch.images);
      Tensor loss = cross_entropy(logits, batch.labels, c.label_smoothing);
      double lv = loss.item();
      QSLIM_CHECK(std::isfinite(lv), "training: loss became ", lv, " at epoch ", epoch, ", batch ", b + 1,
                  " (lr ", lr, "); lower the learning rate");
      opt->zero_grad();
      loss.backward();
      opt->step();
      sched->step();
      int64_t n = batch.labels.size(0);
      loss_sum += lv * n;
      Tensor detached = logits.detach();
      correct1 += count_topk_correct(detached, batch.labels, 1);
      correct5 += count_topk_correct(detached, batch.labels, 5);
      seen += n;
      images_done += n;
      ++b;
      if (cb.on_batch) {
        double ips = images_done / std::max(seconds_since(run_start), 1e-9);
        cb.on_batch({epoch, c.epochs, b, batches, lv, seen / std::max(seconds_since(t0), 1e-9),
                     (images_total - images_done) / std::max(ips, 1e-9)});
      }
    }
    EpochReport r;
    r.epoch = epoch;
    r.seconds = seconds_since(t0);
    r.cpu_seconds = process_cpu_seconds() - cpu0;
    r.images_per_s = seen / std::max(r.seconds, 1e-9);
    r.train_loss = loss_sum / std::max<int64_t>(seen, 1);
    r.train_top1 = 100.0 * correct1 / std::max<int64_t>(seen, 1);
    r.train_top5 = 100.0 * correct5 / std::max<int64_t>(seen, 1);
    r.lr = lr;
    r.test = evaluate(model, test_set, c.mean, c.std);
    history.push_back(r);
    if (!c.out_dir.empty()) {
      log << to_json_line(r) << "\n";
      log.flush();
      QSLIM_CHECK(log.good(), "training: writing ", c.out_dir, "/metrics.jsonl failed");
      save_epoch(c, model, *opt, *sched, history, train_set->size());
    }
    if (cb.on_epoch) cb.on_epoch(r);
  }
  return history;
}

}  // namespace qslim::train
