// Resuming training: a run stopped after epoch 1 and resumed for epoch 2 ends with the same weights,
// buffers and metrics, bit for bit, as an uninterrupted 2-epoch run (same seed and thread count);
// the training-state file round-trips; resume errors name the file and what does not match.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/factory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "data/fashion_mnist.h"
#include "models/lenet.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/dropout.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"
#include "train/recipe.h"
#include "train/train_state.h"
#include "train/trainer.h"

using namespace qslim;
using namespace qslim::train;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_resume_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Bitwise equality of two state dicts (names, shapes, dtypes and raw bytes).
::testing::AssertionResult SameBits(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor x = a[i].second.contiguous(), y = b[i].second.contiguous();
    if (a[i].first != b[i].first || x.shape() != y.shape() || x.dtype() != y.dtype())
      return ::testing::AssertionFailure() << "entry " << i << ": " << a[i].first << " vs " << b[i].first;
    if (std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) != 0)
      return ::testing::AssertionFailure() << a[i].first << " differs";
  }
  return ::testing::AssertionSuccess();
}

// Dropout draws from the global generator and batch norm keeps running statistics: both must be
// restored for a bit-identical continuation.
nn::ModulePtr small_net() {
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 32), std::make_shared<nn::BatchNorm1D>(32),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Dropout>(0.3), std::make_shared<nn::Linear>(32, 10)});
}

struct Data {
  std::shared_ptr<data::TensorDataset> train, test;
};

Data slice() {
  return {data::load_fashion_mnist(true, "", 640), data::load_fashion_mnist(false, "", 128)};
}

TrainConfig config(const std::string& optimizer) {
  TrainConfig c;
  c.model = "small";
  c.epochs = 2;
  c.batch_size = 64;
  c.lr = optimizer == "sgd" ? 0.05 : 0.003;
  c.optimizer = optimizer;
  c.nesterov = optimizer == "sgd";
  c.augment = true;
  c.warmup_epochs = 0.5;
  c.seed = 5;
  return c;
}

void expect_same_history(const std::vector<EpochReport>& a, const std::vector<EpochReport>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].train_loss, b[i].train_loss) << "epoch " << a[i].epoch;
    EXPECT_EQ(a[i].train_top1, b[i].train_top1);
    EXPECT_EQ(a[i].test.loss, b[i].test.loss);
    EXPECT_EQ(a[i].test.top1, b[i].test.top1);
    EXPECT_EQ(a[i].lr, b[i].lr);
  }
}

}  // namespace

class ResumeBitIdentical : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeBitIdentical, StopAfterOneEpochThenResume) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  Data d = slice();
  fs::path dir = temp_dir("lib_" + GetParam());
  TrainConfig c = config(GetParam());

  manual_seed(c.seed);
  auto straight = small_net();
  auto h_straight = fit(*straight, d.train, d.test, c);

  TrainConfig first = c;
  first.out_dir = dir.string();
  first.stop_after_epoch = 1;
  manual_seed(c.seed);
  auto interrupted = small_net();
  auto h_first = fit(*interrupted, d.train, d.test, first);
  ASSERT_EQ(h_first.size(), 1u);
  EXPECT_FALSE(SameBits(interrupted->state_dict(), straight->state_dict()));  // the comparison can fail

  // A fresh process would build a fresh model from a different generator state: resume must not care.
  manual_seed(999);
  auto resumed = small_net();
  (void)randn({7});
  TrainConfig second = c;
  second.out_dir = dir.string();
  second.resume_from = resolve_resume_path(dir.string());
  auto h_resumed = fit(*resumed, d.train, d.test, second);
  EXPECT_TRUE(SameBits(resumed->state_dict(), straight->state_dict()));
  expect_same_history(h_resumed, h_straight);
  EXPECT_EQ(global_generator().state(), [&] {
    manual_seed(c.seed);
    auto m = small_net();
    fit(*m, d.train, d.test, c);
    return global_generator().state();
  }());

  // The log and the curves cover both epochs.
  std::ifstream log(dir / "metrics.jsonl");
  std::string line;
  std::vector<EpochReport> logged;
  while (std::getline(log, line)) logged.push_back(epoch_report_from_json(line, "metrics.jsonl"));
  expect_same_history(logged, h_straight);
  std::ifstream svg(dir / "metrics.svg");
  std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind("<svg", 0), 0u);
  EXPECT_NE(text.find("epoch 2, test top-1"), std::string::npos);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ResumeBitIdentical, ::testing::Values("sgd", "adamw"));

TEST(Resume, LeNetTwoEpochsStraightEqualsOnePlusOne) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  Data d = slice();
  fs::path dir = temp_dir("lenet");
  TrainConfig c;
  c.epochs = 2;
  c.batch_size = 64;
  c.augment = true;
  c.label_smoothing = 0.1;
  manual_seed(c.seed);
  models::LeNet5 straight;
  fit(straight, d.train, d.test, c);

  TrainConfig part = c;
  part.out_dir = dir.string();
  part.stop_after_epoch = 1;
  manual_seed(c.seed);
  models::LeNet5 a;
  fit(a, d.train, d.test, part);
  part.stop_after_epoch = 0;
  part.resume_from = (dir / kTrainStateFile).string();
  models::LeNet5 b;
  fit(b, d.train, d.test, part);
  EXPECT_TRUE(SameBits(b.state_dict(), straight.state_dict()));
  // model.safetensors holds the final weights and enough metadata for `qslim eval`.
  models::LeNet5 loaded;
  auto meta = nn::load_module((dir / kModelFile).string(), loaded);
  EXPECT_TRUE(SameBits(loaded.state_dict(), straight.state_dict()));
  EXPECT_EQ(meta["model"], "lenet");
  EXPECT_EQ(meta["epoch"], "2");
  EXPECT_EQ(parse_float_list(meta["mean"], "mean"), c.mean);
  fs::remove_all(dir);
}

TEST(Resume, StateFileRoundTrips) {
  fs::path dir = temp_dir("state");
  TrainState s;
  s.epoch = 2;
  TrainConfig c;
  c.lr = 0.123;
  s.config_json = config_to_json(c);
  Generator g(77);
  g.normal();  // leaves a spare normal in the state
  s.generator_state = g.state();
  s.threads = 2;
  s.limit = 640;
  s.train_examples = 640;
  s.history.resize(2);
  s.history[0].epoch = 1, s.history[1].epoch = 2;
  s.history[1].test.top1 = 87.5;
  s.model = {{"w", full({2, 3}, 1.5f)}};
  s.optimizer = {{"state.0.step", scalar_tensor(3, DType::I64)}};
  s.scheduler = {{"last_step", scalar_tensor(20, DType::I64)}};
  const std::string path = (dir / kTrainStateFile).string();
  save_train_state(path, s);
  TrainState t = load_train_state(path);
  EXPECT_EQ(t.epoch, 2);
  EXPECT_EQ(t.config_json, s.config_json);
  EXPECT_EQ(t.generator_state, s.generator_state);
  EXPECT_EQ(t.threads, 2);
  EXPECT_EQ(t.limit, 640);
  EXPECT_EQ(t.train_examples, 640);
  ASSERT_EQ(t.history.size(), 2u);
  EXPECT_EQ(t.history[1].test.top1, 87.5);
  EXPECT_TRUE(SameBits(t.model, s.model));
  EXPECT_TRUE(SameBits(t.optimizer, s.optimizer));
  EXPECT_TRUE(SameBits(t.scheduler, s.scheduler));
  auto raw = nn::load_tensors(path);
  EXPECT_EQ(raw.metadata.at("format"), kTrainStateFormat);
  EXPECT_EQ(raw.metadata.at("model"), "lenet");
  // The generator continues identically after a restore.
  Generator h;
  h.set_state(t.generator_state);
  EXPECT_EQ(h.normal(), g.normal());
  EXPECT_EQ(h.next_u64(), g.next_u64());
  fs::remove_all(dir);
}

TEST(Resume, ErrorsNameTheFileAndTheMismatch) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  Data d = slice();
  fs::path dir = temp_dir("errors");
  TrainConfig c = config("sgd");
  c.out_dir = dir.string();
  c.stop_after_epoch = 1;
  manual_seed(1);
  auto m = small_net();
  fit(*m, d.train, d.test, c);
  auto error_of = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string state = (dir / kTrainStateFile).string(), model = (dir / kModelFile).string();
  TrainConfig r = c;
  r.resume_from = model;
  std::string e = error_of([&] { fit(*small_net(), d.train, d.test, r); });
  EXPECT_NE(e.find(model + ": not a training-state checkpoint"), std::string::npos) << e;
  r.resume_from = state;
  r.model = "other";
  e = error_of([&] { fit(*small_net(), d.train, d.test, r); });
  EXPECT_NE(e.find("holds model 'small' but this run trains 'other'"), std::string::npos) << e;
  r.model = c.model;
  e = error_of([&] { fit(*small_net(), data::load_fashion_mnist(true, "", 704), d.test, r); });
  EXPECT_NE(e.find("was trained on 640 training examples but this run has 704"), std::string::npos) << e;
  e = error_of([&] {
    auto wrong = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 10)});
    fit(*wrong, d.train, d.test, r);
  });
  EXPECT_NE(e.find("resume: " + state), std::string::npos) << e;
  e = error_of([&] { resolve_resume_path((dir / "nothing").string()); });
  EXPECT_NE(e.find("nothing: no such file or directory"), std::string::npos) << e;
  fs::remove(state);
  e = error_of([&] { resolve_resume_path(dir.string()); });
  EXPECT_NE(e.find("holds no train_state.safetensors"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(ResumeCli, StoppedAndResumedRunMatchesStraightRun) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path d = temp_dir("cli");
  const std::string common = "train --model lenet --epochs 2 --limit 512 --batch-size 64 --augment --threads 2 ";
  auto straight = qslim::testing::run_cli(common + "--out " + (d / "a").string());
  ASSERT_EQ(straight.status, 0) << straight.output;
  auto first = qslim::testing::run_cli(common + "--stop-after 1 --out " + (d / "b").string());
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("stopped: lenet"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("continue with: qslim train --resume"), std::string::npos) << first.output;
  // Thread count and limit come from the checkpoint when not given.
  auto resumed = qslim::testing::run_cli("train --resume " + (d / "b").string());
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming "), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("after epoch 1 of 2"), std::string::npos) << resumed.output;
  auto a = nn::load_tensors((d / "a" / kModelFile).string()), b = nn::load_tensors((d / "b" / kModelFile).string());
  EXPECT_TRUE(SameBits(a.tensors, b.tensors));
  EXPECT_EQ(a.metadata, b.metadata);
  // The model file records the final test figures (quoted by ptq/qat/dynamic --fp32-from-checkpoint).
  EXPECT_EQ(a.metadata.at("test_samples"), "512");
  const auto top5 = straight.output.find("% top-5 ", straight.output.find("final: "));
  ASSERT_NE(top5, std::string::npos) << straight.output;
  EXPECT_NEAR(std::stod(a.metadata.at("test_top5")), std::stod(straight.output.substr(top5 + 8)), 0.005);
  EXPECT_GT(std::stod(a.metadata.at("test_loss")), 0.0);
  // eval reads both the model file and the training state.
  for (const char* f : {kModelFile, kTrainStateFile}) {
    auto e = qslim::testing::run_cli("eval --checkpoint " + (d / "b" / f).string() + " --limit 512");
    ASSERT_EQ(e.status, 0) << e.output;
    EXPECT_NE(e.output.find("test top-1 " + a.metadata.at("test_top1").substr(0, 4)), std::string::npos) << e.output;
  }
  // Changing the configuration of a resumed run is refused, except the epoch count.
  auto lr = qslim::testing::run_cli("train --resume " + (d / "b").string() + " --lr 0.5");
  EXPECT_EQ(lr.status, 1);
  EXPECT_NE(lr.output.find("--lr cannot change on resume"), std::string::npos) << lr.output;
  auto recipe = qslim::testing::run_cli("train --resume " + (d / "b").string() + " --recipe x.json");
  EXPECT_EQ(recipe.status, 1);
  EXPECT_NE(recipe.output.find("--recipe and --resume cannot be combined"), std::string::npos) << recipe.output;
  auto missing = qslim::testing::run_cli("train --resume " + (d / "none").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find((d / "none").string()), std::string::npos) << missing.output;
  auto done = qslim::testing::run_cli("train --resume " + (d / "b").string());  // nothing left to do
  ASSERT_EQ(done.status, 0) << done.output;
  EXPECT_NE(done.output.find("final: lenet"), std::string::npos) << done.output;
  auto longer = qslim::testing::run_cli("train --resume " + (d / "b").string() + " --epochs 3");  // extends the run
  ASSERT_EQ(longer.status, 0) << longer.output;
  EXPECT_NE(longer.output.find("after epoch 2 of 3"), std::string::npos) << longer.output;
  EXPECT_NE(longer.output.find("after 3 epochs"), std::string::npos) << longer.output;
  EXPECT_EQ(load_train_state((d / "b" / kTrainStateFile).string()).history.size(), 3u);
  fs::remove_all(d);
}
