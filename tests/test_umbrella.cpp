// The umbrella header compiles on its own and is enough for a training step.
#include "qslim/qslim.h"

#include <gtest/gtest.h>

TEST(Umbrella, TrainingStepThroughPublicApi) {
  qslim::manual_seed(0);
  auto model = qslim::models::create_model("lenet");
  qslim::optim::GroupOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  qslim::optim::SGD opt(model->parameters(), o);
  qslim::Tensor x = qslim::randn({8, 1, 28, 28}), y = qslim::randint(0, 10, {8});
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    qslim::Tensor loss = qslim::cross_entropy((*model)(x), y);
    (step == 0 ? first : last) = loss.item();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  EXPECT_LT(last, first * 0.8);  // fits 8 fixed examples
}
