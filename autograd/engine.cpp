#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_buffer.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

namespace {
thread_local bool g_grad_enabled = true;
}

bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  t_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::get(const char* op) const {
  if (t_.defined())
    QSLIM_CHECK(t_.version() == version_, op, ": a tensor saved for backward was modified in place (version ",
                version_, " -> ", t_.version(), ")");
  return t_;
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  QSLIM_CHECK(!grads.empty(), "AccumulateGrad: no gradient given");
  if (!grads[0].defined()) return {};
  const Tensor& g = grads[0];
  AutogradMeta& m = leaf->meta();
  QSLIM_CHECK(g.shape() == leaf->shape, "AccumulateGrad: gradient of shape ", shape_str(g.shape()),
              " for a leaf of shape ", shape_str(leaf->shape));
  if (!m.grad) {
    if (exclusively_owned(g) && g.dtype() == leaf->dtype) {
      m.grad = g.impl_ptr();  // nobody else holds it: keep the buffer
    } else {
      // Own a fresh contiguous buffer: the incoming gradient may alias another tensor.
      Tensor own = Tensor::empty(g.shape(), leaf->dtype);
      own.copy_(g);
      m.grad = own.impl_ptr();
    }
  } else {
    Tensor acc(m.grad);
    kernels::add_inplace(acc, g);
  }
  return {};
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  QSLIM_CHECK(fn_ != nullptr, name_, ": backward through the graph a second time; its saved tensors were freed "
              "(pass retain_graph=true to the first backward)");
  return fn_(grads);
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  AutogradMeta& m = t.impl().meta();
  if (m.grad_fn) return {m.grad_fn, m.output_nr};
  auto acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m.grad_accumulator = acc;
  }
  return {acc, 0};
}

void record(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs, const std::string& name,
            BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>(name, std::move(fn), static_cast<uint32_t>(outputs.size()));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next_edges.push_back(gradient_edge(in));
  for (size_t i = 0; i < outputs.size(); ++i) {
    AutogradMeta& m = outputs[i].impl().meta();
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = static_cast<uint32_t>(i);
  }
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  NoGradGuard no_grad;
  // Count, for every reachable node, how many edges lead into it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (const Tensor& r : roots) {
    Edge e = gradient_edge(r);
    if (e.valid() && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      deps[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // holds nodes alive while queued
  auto deliver = [&](const Edge& e, const Tensor& g) {
    auto& buf = buffers[e.fn.get()];
    if (buf.empty()) buf.resize(e.fn->num_outputs());
    Tensor& slot = buf[e.input_nr];
    if (!g.defined()) return;
    if (!slot.defined()) {
      slot = g;
    } else if (exclusively_owned(slot) && slot.shape() == g.shape() && slot.dtype() == g.dtype()) {
      kernels::add_inplace(slot, g);
    } else {
      slot = kernels::add(slot, g);
    }
  };
  std::vector<std::shared_ptr<Node>> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    Edge e = gradient_edge(roots[i]);
    if (!e.valid()) continue;
    deliver(e, grads[i]);
    if (!keep.count(e.fn.get())) {
      keep[e.fn.get()] = e.fn;
      if (deps[e.fn.get()] == 0) ready.push_back(e.fn);
    }
  }
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    std::vector<Tensor> in = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    in.resize(node->num_outputs());
    std::vector<Tensor> out = node->apply(std::move(in));
    if (!retain_graph) node->release_saved();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      if (i < out.size()) deliver(e, out[i]);
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn);
    }
  }
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  QSLIM_CHECK(requires_grad(), "backward: tensor does not require grad and has no grad_fn");
  Tensor g = grad;
  if (!g.defined()) {
    QSLIM_CHECK(numel() == 1, "backward: implicit gradient needs a one-element tensor, got shape ",
                shape_str(shape()));
    g = ones(shape(), dtype());
  }
  QSLIM_CHECK(g.shape() == shape(), "backward: gradient shape ", shape_str(g.shape()), " does not match tensor shape ",
              shape_str(shape()));
  run_backward({*this}, {g}, retain_graph);
}

}  // namespace qslim
