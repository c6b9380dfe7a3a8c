// Optimizer base: parameter groups with their own hyperparameters, zero_grad, and export/import of
// the whole optimizer state (per-parameter buffers, step counts, group hyperparameters) as
// NamedTensors so that training resumes bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace qslim::optim {

using nn::NamedTensors;

// Hyperparameters of one parameter group. Each optimizer reads the fields it uses:
// SGD: lr, weight_decay, momentum, dampening, nesterov; Adam/AdamW: lr, weight_decay, beta1, beta2,
// eps, amsgrad. (PyTorch's AdamW defaults weight_decay to 1e-2; here it is always explicit.)
struct GroupOptions {
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool amsgrad = false;
};

struct ParamGroup {
  std::vector<Tensor> params;
  GroupOptions options;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;
  // One update of every parameter that has a gradient (parameters without one are skipped).
  virtual void step() = 0;
  // Drops the gradients (set_to_none) or zeroes them in place.
  void zero_grad(bool set_to_none = true);

  // Parameters must be defined, floating, contiguous CPU leaves that require grad, and may appear in
  // only one group.
  void add_param_group(ParamGroup group);
  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const;
  GroupOptions& options(size_t g);
  double lr(size_t g = 0) const { return group(g).options.lr; }
  void set_lr(size_t g, double lr);
  void set_lr(double lr);  // every group
  // The lr a group had when it was added; schedulers compute from it.
  double initial_lr(size_t g) const;

  // Snapshot (copies) of the state: "state.<k>.<buffer>" and "state.<k>.step" for the k-th parameter
  // counted across groups, "param_groups.<g>.<hyperparameter>" as f64 scalars.
  NamedTensors state() const;
  // Restores a snapshot taken from an optimizer of the same kind over parameters of the same shapes
  // and grouping. Strict: unknown, missing or mis-shaped entries are errors naming the key.
  void load_state(const NamedTensors& state);

 protected:
  Optimizer() = default;

  struct ParamState {
    int64_t step = 0;
    std::vector<Tensor> buffers;  // in the order of buffer_names(); empty until the first update
  };

  // Throws when the options are invalid for this optimizer.
  virtual void validate(const GroupOptions& o) const = 0;
  // Names of the per-parameter buffers kept under these options.
  virtual std::vector<std::string> buffer_names(const GroupOptions& o) const = 0;

  // The gradient of p as a contiguous tensor of p's dtype, or undefined when p has none.
  static Tensor grad_of(const Tensor& p, const char* op);
  // The state of parameter i of group g with `num_buffers` buffers (buffer_names(...).size(), computed
  // once per group), creating missing ones zero-filled.
  ParamState& state_for(size_t g, size_t i, size_t num_buffers);

  std::vector<ParamGroup> groups_;
  std::vector<double> initial_lr_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
};

}  // namespace qslim::optim
