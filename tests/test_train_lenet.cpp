// Accuracy is checked by training: LeNet-5 on a slice of real Fashion-MNIST.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/random.h"
#include "data/fashion_mnist.h"
#include "models/lenet.h"
#include "nn/module.h"
#include "tests/support/test_support.h"
#include "train/trainer.h"

using namespace qslim;

TEST(TrainLeNet, LearnsFashionMnistSlice) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  manual_seed(3);
  models::LeNet5 model;
  auto train_set = data::load_fashion_mnist(true, "", 12000);
  auto test_set = data::load_fashion_mnist(false, "", 2000);
  train::TrainConfig c;
  c.epochs = 3;
  c.batch_size = 64;
  c.lr = 0.05;
  auto before = train::evaluate(model, test_set, c.mean, c.std);
  EXPECT_LT(before.top1, 30.0);
  auto reports = train::fit(model, train_set, test_set, c);
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_LT(reports.back().train_loss, reports.front().train_loss);
  EXPECT_GT(reports.back().test.top1, 80.0);
  EXPECT_GT(reports.back().test.top5, 98.0);
}

TEST(TrainLeNet, SameSeedSameWeights) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  auto train_set = data::load_fashion_mnist(true, "", 512);
  auto test_set = data::load_fashion_mnist(false, "", 128);
  train::TrainConfig c;
  c.epochs = 1;
  c.batch_size = 64;
  c.augment = true;
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    manual_seed(11);
    models::LeNet5 model;
    train::fit(model, train_set, test_set, c);
    std::vector<float> all;
    for (auto& [name, t] : model.state_dict()) {
      auto v = t.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    runs.push_back(all);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(TrainLeNet, NanLossIsReportedNotTrainedOn) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  auto train_set = data::load_fashion_mnist(true, "", 256);
  auto test_set = data::load_fashion_mnist(false, "", 64);
  manual_seed(1);
  models::LeNet5 model;
  train::TrainConfig c;
  c.epochs = 1;
  c.batch_size = 64;
  c.lr = 1e30;  // diverges within a few steps
  try {
    train::fit(model, train_set, test_set, c);
    FAIL() << "expected a NaN/Inf loss error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("loss became"), std::string::npos) << e.what();
  }
}

TEST(TrainLeNet, EpochFractionRunsTheLeadingBatchesAndTheScheduleSpansThem) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  set_num_threads(2);
  auto train_set = data::load_fashion_mnist(true, "", 640);  // 10 batches of 64
  auto test_set = data::load_fashion_mnist(false, "", 128);
  train::TrainConfig c;
  c.epochs = 2;
  c.batch_size = 64;
  c.lr = 0.05;
  c.epoch_fraction = 0.35;  // ceil(3.5) = 4 batches per epoch
  manual_seed(5);
  models::LeNet5 model;
  std::vector<std::pair<int, int64_t>> steps;  // (epoch, batch) of every optimizer step
  train::TrainCallbacks cb;
  cb.on_batch = [&](const train::BatchProgress& p) {
    EXPECT_EQ(p.batches, 4);
    steps.emplace_back(p.epoch, p.batch);
  };
  auto reports = train::fit(model, train_set, test_set, c, cb);
  ASSERT_EQ(reports.size(), 2u);
  const std::vector<std::pair<int, int64_t>> expected = {{1, 1}, {1, 2}, {1, 3}, {1, 4},
                                                         {2, 1}, {2, 2}, {2, 3}, {2, 4}};
  EXPECT_EQ(steps, expected);
  // The cosine schedule runs over the 8 steps taken: the last one used step 7 of 8.
  EXPECT_NEAR(reports.back().lr, 0.05 * 0.5 * (1 + std::cos(M_PI * 7.0 / 8.0)), 1e-12);
  EXPECT_NEAR(reports.front().lr, 0.05 * 0.5 * (1 + std::cos(M_PI * 3.0 / 8.0)), 1e-12);

  for (double bad : {0.0, -0.5, 1.5}) {
    c.epoch_fraction = bad;
    try {
      train::validate(c);
      ADD_FAILURE() << "epoch fraction " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("epoch fraction must be in (0, 1]"), std::string::npos) << e.what();
    }
  }
}
