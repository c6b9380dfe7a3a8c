// Batch normalisation layers with torchvision's names: parameters weight, bias; buffers
// running_mean, running_var, num_batches_tracked (i64 scalar).
#pragma once
#include "nn/module.h"

namespace qslim::nn {

class BatchNormBase : public Module {
 public:
  // momentum follows PyTorch: running = (1 - momentum) * running + momentum * batch statistic.
  BatchNormBase(int64_t num_features, double eps, double momentum, bool affine, bool track_running_stats);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_; }
  void reset_running_stats();
  void reset_parameters();

 protected:
  virtual void check_input(const Tensor& x) const = 0;

 private:
  int64_t num_features_;
  double eps_, momentum_;
  bool affine_, track_;
};

// Input [N, C] or [N, C, L].
class BatchNorm1D : public BatchNormBase {
 public:
  explicit BatchNorm1D(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNormBase(num_features, eps, momentum, affine, track_running_stats) {}
  std::string type_name() const override { return "BatchNorm1D"; }

 protected:
  void check_input(const Tensor& x) const override;
};

// Input [N, C, H, W].
class BatchNorm2D : public BatchNormBase {
 public:
  explicit BatchNorm2D(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNormBase(num_features, eps, momentum, affine, track_running_stats) {}
  std::string type_name() const override { return "BatchNorm2D"; }

 protected:
  void check_input(const Tensor& x) const override;
};

}  // namespace qslim::nn
