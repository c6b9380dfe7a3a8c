// Module: ordered parameters, buffers and children with dotted names (`layers.0.conv1.weight`).
// Forward code reaches children through child("name") rather than cached pointers, so that
// replace_submodule (used by quantization to swap layers) takes effect everywhere.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qslim::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module;

// Sees every module call made through Module::operator() on the installing thread, after the
// forward returned (so a parent is reported after its children: leaves arrive in execution order).
class ModuleCallObserver {
 public:
  virtual ~ModuleCallObserver() = default;
  virtual void on_call(const Module& m, const std::vector<Tensor>& inputs, const Tensor& output) = 0;
};

// Installs an observer on this thread for its lifetime (restoring the previous one afterwards).
class ScopedCallObserver {
 public:
  explicit ScopedCallObserver(ModuleCallObserver* observer);
  ~ScopedCallObserver();
  ScopedCallObserver(const ScopedCallObserver&) = delete;
  ScopedCallObserver& operator=(const ScopedCallObserver&) = delete;

 private:
  ModuleCallObserver* previous_;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;

  // Single-input forward; multi-input modules (Add, Concat) override the vector form instead.
  virtual Tensor forward(const Tensor& x);
  virtual Tensor forward(const std::vector<Tensor>& xs);
  // Calls forward and reports the call to this thread's ModuleCallObserver, if any. Forward code
  // calls children through these (not forward directly) so tracing and per-layer reports see them.
  Tensor operator()(const Tensor& x);
  Tensor operator()(const Tensor& a, const Tensor& b) { return (*this)(std::vector<Tensor>{a, b}); }
  Tensor operator()(const std::vector<Tensor>& xs);

  // "Conv2D", "Linear", ... used by quantization's type rules and by printing.
  virtual std::string type_name() const = 0;
  // Extra text shown after the type when printing (e.g. "1, 6, kernel_size=5").
  virtual std::string extra_repr() const { return ""; }

  // ---- registration (names must be unique within a module and contain no '.') ----
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // ---- access ----
  Module& child(const std::string& name) const;  // direct child; throws naming the known children
  std::shared_ptr<Module> child_ptr(const std::string& name) const;
  bool has_child(const std::string& name) const;
  Tensor param(const std::string& name) const;   // direct parameter
  Tensor buffer(const std::string& name) const;  // direct buffer
  bool has_param(const std::string& name) const;
  bool has_buffer(const std::string& name) const;
  void set_param(const std::string& name, const Tensor& t);   // replaces the tensor handle
  void set_buffer(const std::string& name, const Tensor& t);

  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // Self first (name = prefix), then all descendants in registration order, with dotted names.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules(const std::string& prefix = "");
  std::shared_ptr<Module> get_submodule(const std::string& dotted);   // "" is this module
  void replace_submodule(const std::string& dotted, std::shared_ptr<Module> m);

  // ---- modes ----
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- state ----
  NamedTensors state_dict() const;  // parameters then buffers, per module in order
  // Copies values into existing tensors. Strict: every key must match in name, shape and dtype
  // and no key may be missing or unexpected; errors name the key and both shapes.
  void load_state_dict(const NamedTensors& state, bool strict = true);
  void zero_grad();
  int64_t num_parameters() const;

  std::string to_string() const;  // indented tree, PyTorch style

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  bool training_ = true;

 private:
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace qslim::nn
