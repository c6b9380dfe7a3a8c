// Graph nodes of define-by-run autograd. Each differentiable op that sees an input requiring grad
// records a Node whose backward maps output gradients to input gradients; edges point at the
// inputs' nodes (their grad_fn, or an AccumulateGrad node for leaves).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qslim {

struct Edge {
  std::shared_ptr<Node> fn;  // null: input does not need a gradient
  uint32_t input_nr = 0;     // which output of `fn` the gradient flows into
  bool valid() const { return fn != nullptr; }
};

struct Node : std::enable_shared_from_this<Node> {
  virtual ~Node() = default;
  // grads: one per output of this node (undefined = zero). Returns one gradient per next edge.
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  virtual void release_saved() {}
  virtual uint32_t num_outputs() const { return 1; }
  std::vector<Edge> next_edges;
};

// Leaf sink: adds the incoming gradient into the leaf's .grad().
struct AccumulateGrad : Node {
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf(std::move(leaf)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }
  std::shared_ptr<TensorImpl> leaf;
};

// A tensor kept for backward: an alias without autograd history (no reference cycles) plus the
// storage version at save time, so a later in-place write is reported instead of giving wrong grads.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor get(const char* op) const;  // throws if modified in place since saving
  bool defined() const { return t_.defined(); }

 private:
  Tensor t_;
  uint64_t version_ = 0;
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;

// Node whose backward is a lambda (captures hold the SavedTensors and scalars it needs).
struct FunctionNode : Node {
  FunctionNode(std::string name, BackwardFn fn, uint32_t outputs = 1)
      : name_(std::move(name)), fn_(std::move(fn)), outputs_(outputs) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return name_; }
  void release_saved() override { fn_ = nullptr; }
  uint32_t num_outputs() const override { return outputs_; }

 private:
  std::string name_;
  BackwardFn fn_;
  uint32_t outputs_;
};

// True when grad mode is on and any of `inputs` requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);
// The edge a gradient for `t` should flow along (its grad_fn, or its leaf accumulator).
Edge gradient_edge(const Tensor& t);
// Records `fn` as the producer of `outputs` with `inputs` as its differentiable inputs.
// Gradient i returned by fn goes to inputs[i]. Call only when needs_grad(inputs).
void record(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs, const std::string& name,
            BackwardFn fn);
inline void record(const Tensor& output, const std::vector<Tensor>& inputs, const std::string& name,
                   BackwardFn fn) {
  record(std::vector<Tensor>{output}, inputs, name, std::move(fn));
}

// Runs backward from `roots` seeded with `grads`.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace qslim
