#include "nn/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>

#include "core/factory.h"

namespace qslim::optim {

void LRScheduler::set_step(int64_t step) {
  QSLIM_CHECK(step >= 0, "LRScheduler: step must be >= 0, got ", step);
  step_ = step;
  for (size_t g = 0; g < opt_.num_groups(); ++g) opt_.set_lr(g, lr_at(step_, opt_.initial_lr(g)));
}

std::vector<double> LRScheduler::last_lr() const {
  std::vector<double> out;
  for (size_t g = 0; g < opt_.num_groups(); ++g) out.push_back(opt_.lr(g));
  return out;
}

NamedTensors LRScheduler::state() const { return {{"last_step", scalar_tensor(static_cast<double>(step_), DType::I64)}}; }

void LRScheduler::load_state(const NamedTensors& state) {
  QSLIM_CHECK(state.size() == 1 && state[0].first == "last_step" && state[0].second.defined() &&
                  state[0].second.numel() == 1,
              "LRScheduler::load_state: expected exactly one entry 'last_step' holding one value, got ", state.size(),
              " entries", state.empty() ? std::string() : " starting with '" + state[0].first + "'");
  set_step(static_cast<int64_t>(state[0].second.item()));
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  QSLIM_CHECK(step_size > 0, "StepLR: step_size must be > 0, got ", step_size);
  apply();
}

double StepLR::lr_at(int64_t step, double base_lr) const {
  return base_lr * std::pow(gamma_, static_cast<double>(step / step_size_));
}

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  for (size_t i = 1; i < milestones_.size(); ++i)
    QSLIM_CHECK(milestones_[i] > milestones_[i - 1], "MultiStepLR: milestones must be strictly increasing, got ",
                milestones_[i - 1], " then ", milestones_[i]);
  apply();
}

double MultiStepLR::lr_at(int64_t step, double base_lr) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), step) - milestones_.begin();
  return base_lr * std::pow(gamma_, static_cast<double>(passed));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t total_steps, int64_t warmup_steps, double eta_min,
                                     double warmup_start_factor)
    : LRScheduler(optimizer),
      total_(total_steps),
      warmup_(warmup_steps),
      eta_min_(eta_min),
      start_factor_(warmup_start_factor) {
  QSLIM_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "CosineAnnealingLR: need 0 <= warmup_steps (",
              warmup_steps, ") < total_steps (", total_steps, ")");
  QSLIM_CHECK(warmup_start_factor >= 0.0 && warmup_start_factor <= 1.0,
              "CosineAnnealingLR: warmup_start_factor must be in [0, 1], got ", warmup_start_factor);
  apply();
}

double CosineAnnealingLR::lr_at(int64_t step, double base_lr) const {
  if (step < warmup_) {
    const double f = start_factor_ + (1.0 - start_factor_) * static_cast<double>(step) / static_cast<double>(warmup_);
    return base_lr * f;
  }
  if (step >= total_) return eta_min_;
  const double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
  return eta_min_ + (base_lr - eta_min_) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace qslim::optim
