// Sequential: children named "0", "1", ... applied in order. Empty Sequential is the identity.
#pragma once
#include <initializer_list>

#include "nn/module.h"

namespace qslim::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<ModulePtr> modules);
  explicit Sequential(const std::vector<ModulePtr>& modules);

  // Appends under the next index name and returns the module.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(named_children().size()), m);
    return m;
  }
  size_t size() const { return named_children().size(); }
  bool empty() const { return named_children().empty(); }
  // The current child at position i (reflects replace_submodule).
  ModulePtr operator[](size_t i) const;

  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
};

}  // namespace qslim::nn
