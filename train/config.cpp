#include "train/config.h"

#include <cmath>

#include "core/error.h"

namespace qslim::train {

void validate(const TrainConfig& c) {
  QSLIM_CHECK(c.optimizer == "sgd" || c.optimizer == "adam" || c.optimizer == "adamw", "unknown optimizer '",
              c.optimizer, "' (allowed: sgd, adam, adamw)");
  QSLIM_CHECK(c.schedule == "cosine" || c.schedule == "step" || c.schedule == "constant", "unknown schedule '",
              c.schedule, "' (allowed: cosine, step, constant)");
  QSLIM_CHECK(!c.model.empty(), "model spec is empty");
  QSLIM_CHECK(c.epochs >= 1, "epochs must be >= 1, got ", c.epochs);
  QSLIM_CHECK(c.epoch_fraction > 0 && c.epoch_fraction <= 1, "epoch fraction must be in (0, 1], got ",
              c.epoch_fraction);
  QSLIM_CHECK(c.batch_size >= 1, "batch size must be >= 1, got ", c.batch_size);
  QSLIM_CHECK(c.lr > 0 && std::isfinite(c.lr), "learning rate must be positive, got ", c.lr);
  QSLIM_CHECK(c.momentum >= 0 && c.momentum < 1, "momentum must be in [0, 1), got ", c.momentum);
  QSLIM_CHECK(!c.nesterov || c.momentum > 0, "nesterov needs momentum > 0, got momentum ", c.momentum);
  QSLIM_CHECK(c.weight_decay >= 0 && std::isfinite(c.weight_decay), "weight decay must be >= 0, got ",
              c.weight_decay);
  QSLIM_CHECK(c.warmup_epochs >= 0 && c.warmup_epochs < c.epochs, "warmup epochs must be in [0, epochs = ", c.epochs,
              "), got ", c.warmup_epochs);
  QSLIM_CHECK(c.step_size_epochs >= 1, "step size must be >= 1 epoch, got ", c.step_size_epochs);
  QSLIM_CHECK(c.gamma > 0 && std::isfinite(c.gamma), "gamma must be positive, got ", c.gamma);
  QSLIM_CHECK(c.label_smoothing >= 0 && c.label_smoothing < 1, "label smoothing must be in [0, 1), got ",
              c.label_smoothing);
  QSLIM_CHECK(c.crop_padding >= 0, "crop padding must be >= 0, got ", c.crop_padding);
  QSLIM_CHECK(!c.mean.empty() && c.mean.size() == c.std.size(), "normalisation mean has ", c.mean.size(),
              " values and std has ", c.std.size(), ", expected the same non-zero count");
  for (size_t i = 0; i < c.std.size(); ++i)
    QSLIM_CHECK(c.std[i] > 0 && std::isfinite(c.std[i]) && std::isfinite(c.mean[i]), "normalisation std[", i,
                "] must be positive and mean[", i, "] finite, got mean ", c.mean[i], " std ", c.std[i]);
  QSLIM_CHECK(c.prefetch >= 0, "prefetch must be >= 0, got ", c.prefetch);
  QSLIM_CHECK(c.workers >= 1 && c.workers <= 64, "data loader workers must be in [1, 64], got ", c.workers);
  QSLIM_CHECK(c.stop_after_epoch >= 0, "stop after epoch must be >= 0, got ", c.stop_after_epoch);
}

}  // namespace qslim::train
