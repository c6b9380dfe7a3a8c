// Learning-rate schedules as closed-form functions lr(step) of each group's initial lr, PyTorch
// style: construction applies lr(0), every step() advances the counter and applies lr(step).
// "step" is whatever unit the caller steps in: call step() once per iteration for a per-iteration
// schedule (and give step counts in iterations), or once per epoch for a per-epoch one.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/optim/optimizer.h"

namespace qslim::optim {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer) : opt_(optimizer) {}
  virtual ~LRScheduler() = default;

  // Learning rate at `step` for a group whose initial lr is `base_lr`.
  virtual double lr_at(int64_t step, double base_lr) const = 0;

  void step() { set_step(step_ + 1); }
  // Jumps to `step` (e.g. when resuming) and applies its learning rates.
  void set_step(int64_t step);
  int64_t last_step() const { return step_; }
  std::vector<double> last_lr() const;

  // {"last_step": i64 scalar}, for checkpoints; load_state calls set_step.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 protected:
  void apply() { set_step(step_); }  // derived constructors call this once their fields are set

  Optimizer& opt_;
  int64_t step_ = 0;
};

// lr = base * gamma^floor(step / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t step, double base_lr) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base * gamma^(number of milestones <= step); milestones must be increasing.
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  double lr_at(int64_t step, double base_lr) const override;

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

// Linear warm-up from base * warmup_start_factor at step 0 to base at step warmup_steps, then
// cosine annealing to eta_min at total_steps (and eta_min after it):
//   lr = eta_min + (base - eta_min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2
// With warmup_steps = 0 this is PyTorch's CosineAnnealingLR with T_max = total_steps.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t total_steps, int64_t warmup_steps = 0, double eta_min = 0.0,
                    double warmup_start_factor = 0.0);
  double lr_at(int64_t step, double base_lr) const override;

 private:
  int64_t total_, warmup_;
  double eta_min_, start_factor_;
};

}  // namespace qslim::optim
