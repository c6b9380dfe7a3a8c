#include "models/flops.h"

#include <string>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "nn/conv2d.h"
#include "nn/linear.h"

namespace qslim::models {

namespace {

// MACs per output element of a counted leaf, 0 for any other module.
int64_t macs_per_output(const nn::Module& m) {
  if (auto* c = dynamic_cast<const nn::Conv2D*>(&m)) {
    nn::Size2 k = c->kernel_size();
    return c->in_channels() / c->groups() * k.h * k.w;
  }
  if (auto* l = dynamic_cast<const nn::Linear*>(&m)) return l->in_features();
  return 0;
}

class MacCounter : public nn::Module {
 public:
  MacCounter(nn::ModulePtr inner, int64_t per_output, int64_t* total)
      : inner_(std::move(inner)), per_output_(per_output), total_(total) {}
  using Module::forward;
  Tensor forward(const Tensor& x) override {
    Tensor y = inner_->forward(x);
    *total_ += per_output_ * y.numel();
    return y;
  }
  std::string type_name() const override { return "MacCounter(" + inner_->type_name() + ")"; }

 private:
  nn::ModulePtr inner_;
  int64_t per_output_;
  int64_t* total_;
};

// Puts the original leaves back and restores every module's training flag on scope exit.
class Restorer {
 public:
  explicit Restorer(nn::Module& model) : model_(model) {
    for (auto& [name, m] : model.named_modules()) modes_.emplace_back(m, m->is_training());
  }
  void swapped(const std::string& name, nn::ModulePtr original) { swapped_.emplace_back(name, std::move(original)); }
  // True when `name` lies inside an already replaced module (its children are not reachable).
  bool inside_swapped(const std::string& name) const {
    for (const auto& [s, m] : swapped_)
      if (name.size() > s.size() && name.compare(0, s.size(), s) == 0 && name[s.size()] == '.') return true;
    return false;
  }
  ~Restorer() {
    for (auto it = swapped_.rbegin(); it != swapped_.rend(); ++it) model_.replace_submodule(it->first, it->second);
    // Parents first: train() recurses, so each later call overrides what its ancestors set.
    for (auto& [m, training] : modes_) m->train(training);
  }

 private:
  nn::Module& model_;
  std::vector<std::pair<nn::ModulePtr, bool>> modes_;
  std::vector<std::pair<std::string, nn::ModulePtr>> swapped_;
};

}  // namespace

int64_t count_macs(nn::Module& model, const Shape& input_shape) {
  QSLIM_CHECK(input_shape.size() >= 2, "count_macs: input shape ", shape_str(input_shape),
              " needs at least 2 dims ([N, features] or [N, C, H, W]; [C, H, W] for one image)");
  for (int64_t d : input_shape)
    QSLIM_CHECK(d > 0, "count_macs: input shape ", shape_str(input_shape), " has a non-positive dimension");
  Shape shape = input_shape;
  if (shape.size() == 3) shape.insert(shape.begin(), 1);

  int64_t total = 0;
  Restorer restore(model);
  for (auto& [name, m] : model.named_modules()) {
    if (name.empty()) continue;  // the root itself is handled below
    int64_t per = macs_per_output(*m);
    if (per == 0 || restore.inside_swapped(name)) continue;
    restore.swapped(name, m);
    model.replace_submodule(name, std::make_shared<MacCounter>(m, per, &total));
  }
  model.eval();
  NoGradGuard no_grad;
  Tensor y = model.forward(zeros(shape));
  // A bare Conv2D or Linear passed as the model cannot replace itself.
  if (int64_t root = macs_per_output(model)) total += root * y.numel();
  return total;
}

}  // namespace qslim::models
