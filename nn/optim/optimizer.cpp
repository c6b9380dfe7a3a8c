#include "nn/optim/optimizer.h"

#include <map>
#include <set>

#include "core/factory.h"

namespace qslim::optim {

namespace {

// Hyperparameters exported per group, with accessors into GroupOptions.
struct HyperField {
  const char* name;
  double (*get)(const GroupOptions&);
  void (*set)(GroupOptions&, double);
};

const std::vector<HyperField>& hyper_fields() {
  static const std::vector<HyperField> fields = {
      {"lr", [](const GroupOptions& o) { return o.lr; }, [](GroupOptions& o, double v) { o.lr = v; }},
      {"weight_decay", [](const GroupOptions& o) { return o.weight_decay; },
       [](GroupOptions& o, double v) { o.weight_decay = v; }},
      {"momentum", [](const GroupOptions& o) { return o.momentum; }, [](GroupOptions& o, double v) { o.momentum = v; }},
      {"dampening", [](const GroupOptions& o) { return o.dampening; },
       [](GroupOptions& o, double v) { o.dampening = v; }},
      {"nesterov", [](const GroupOptions& o) { return o.nesterov ? 1.0 : 0.0; },
       [](GroupOptions& o, double v) { o.nesterov = v != 0.0; }},
      {"beta1", [](const GroupOptions& o) { return o.beta1; }, [](GroupOptions& o, double v) { o.beta1 = v; }},
      {"beta2", [](const GroupOptions& o) { return o.beta2; }, [](GroupOptions& o, double v) { o.beta2 = v; }},
      {"eps", [](const GroupOptions& o) { return o.eps; }, [](GroupOptions& o, double v) { o.eps = v; }},
      {"amsgrad", [](const GroupOptions& o) { return o.amsgrad ? 1.0 : 0.0; },
       [](GroupOptions& o, double v) { o.amsgrad = v != 0.0; }},
  };
  return fields;
}

double scalar_of(const Tensor& t, const std::string& key) {
  QSLIM_CHECK(t.defined() && t.numel() == 1, "Optimizer::load_state: entry '", key,
              "' must hold one value, got shape ", t.defined() ? shape_str(t.shape()) : std::string("(undefined)"));
  return t.item();
}

}  // namespace

void Optimizer::add_param_group(ParamGroup group) {
  const size_t g = groups_.size();
  validate(group.options);
  QSLIM_CHECK(!group.params.empty(), name(), ": parameter group ", g, " is empty");
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& other : groups_)
    for (const Tensor& p : other.params) seen.insert(p.impl_ptr().get());
  for (size_t i = 0; i < group.params.size(); ++i) {
    const Tensor& p = group.params[i];
    QSLIM_CHECK(p.defined(), name(), ": parameter ", i, " of group ", g, " is undefined");
    QSLIM_CHECK(p.is_floating_point(), name(), ": parameter ", i, " of group ", g, " has dtype ",
                dtype_name(p.dtype()), ", expected f32 or f64");
    QSLIM_CHECK(p.device() == Device::CPU, name(), ": parameter ", i, " of group ", g, " is not on the CPU");
    QSLIM_CHECK(p.is_leaf(), name(), ": parameter ", i, " of group ", g, " (shape ", shape_str(p.shape()),
                ") is not a leaf tensor");
    QSLIM_CHECK(p.requires_grad(), name(), ": parameter ", i, " of group ", g, " (shape ", shape_str(p.shape()),
                ") does not require grad");
    QSLIM_CHECK(p.is_contiguous(), name(), ": parameter ", i, " of group ", g, " (shape ", shape_str(p.shape()),
                ") is not contiguous");
    QSLIM_CHECK(seen.insert(p.impl_ptr().get()).second, name(), ": parameter ", i, " of group ", g,
                " (shape ", shape_str(p.shape()), ") appears in more than one place");
  }
  initial_lr_.push_back(group.options.lr);
  state_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

const ParamGroup& Optimizer::group(size_t g) const {
  QSLIM_CHECK(g < groups_.size(), name(), ": group ", g, " out of range (", groups_.size(), " groups)");
  return groups_[g];
}

GroupOptions& Optimizer::options(size_t g) {
  QSLIM_CHECK(g < groups_.size(), name(), ": group ", g, " out of range (", groups_.size(), " groups)");
  return groups_[g].options;
}

void Optimizer::set_lr(size_t g, double lr) {
  QSLIM_CHECK(lr >= 0.0, name(), ": learning rate must be >= 0, got ", lr);
  options(g).lr = lr;
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

double Optimizer::initial_lr(size_t g) const {
  QSLIM_CHECK(g < groups_.size(), name(), ": group ", g, " out of range (", groups_.size(), " groups)");
  return initial_lr_[g];
}

void Optimizer::zero_grad(bool set_to_none) {
  for (ParamGroup& grp : groups_)
    for (Tensor& p : grp.params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      if (set_to_none)
        p.set_grad(Tensor());
      else
        g.zero_();
    }
}

Tensor Optimizer::grad_of(const Tensor& p, const char* op) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  QSLIM_CHECK(g.dtype() == p.dtype(), op, ": gradient dtype ", dtype_name(g.dtype()), " differs from parameter dtype ",
              dtype_name(p.dtype()), " (shape ", shape_str(p.shape()), ")");
  QSLIM_CHECK(g.shape() == p.shape(), op, ": gradient shape ", shape_str(g.shape()), " differs from parameter shape ",
              shape_str(p.shape()));
  return g.contiguous();
}

Optimizer::ParamState& Optimizer::state_for(size_t g, size_t i, size_t num_buffers) {
  ParamState& s = state_[g][i];
  if (s.buffers.size() != num_buffers) {
    // First update, or the options changed (e.g. amsgrad switched on): start missing buffers at zero.
    const Tensor& p = groups_[g].params[i];
    while (s.buffers.size() < num_buffers) s.buffers.push_back(zeros(p.shape(), p.dtype()));
    s.buffers.resize(num_buffers);
  }
  return s;
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  size_t k = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::vector<std::string> names = buffer_names(groups_[g].options);
    for (size_t i = 0; i < groups_[g].params.size(); ++i, ++k) {
      const ParamState& s = state_[g][i];
      if (s.step == 0 && s.buffers.empty()) continue;
      const std::string prefix = "state." + std::to_string(k) + ".";
      out.emplace_back(prefix + "step", scalar_tensor(static_cast<double>(s.step), DType::I64));
      for (size_t b = 0; b < s.buffers.size() && b < names.size(); ++b)
        out.emplace_back(prefix + names[b], s.buffers[b].clone());
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    out.emplace_back(prefix + "num_params", scalar_tensor(static_cast<double>(groups_[g].params.size()), DType::I64));
    out.emplace_back(prefix + "initial_lr", scalar_tensor(initial_lr_[g], DType::F64));
    for (const HyperField& f : hyper_fields())
      out.emplace_back(prefix + f.name, scalar_tensor(f.get(groups_[g].options), DType::F64));
  }
  return out;
}

void Optimizer::load_state(const NamedTensors& state) {
  const std::string op = name() + "::load_state";
  std::map<std::string, Tensor> entries;
  for (const auto& [key, t] : state)
    QSLIM_CHECK(entries.emplace(key, t).second, op, ": duplicate entry '", key, "'");
  std::set<std::string> used;
  auto take = [&](const std::string& key) -> const Tensor* {
    auto it = entries.find(key);
    if (it == entries.end()) return nullptr;
    used.insert(key);
    return &it->second;
  };
  auto require = [&](const std::string& key) -> const Tensor& {
    const Tensor* t = take(key);
    QSLIM_CHECK(t != nullptr, op, ": missing entry '", key, "'");
    return *t;
  };

  // Build everything first and commit at the end, so a failed load leaves the optimizer untouched.
  std::vector<GroupOptions> new_options(groups_.size());
  std::vector<double> new_initial(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    const double n = scalar_of(require(prefix + "num_params"), prefix + "num_params");
    QSLIM_CHECK(n == static_cast<double>(groups_[g].params.size()), op, ": group ", g, " has ",
                groups_[g].params.size(), " parameters but the saved state has ", n);
    new_initial[g] = scalar_of(require(prefix + "initial_lr"), prefix + "initial_lr");
    for (const HyperField& f : hyper_fields()) f.set(new_options[g], scalar_of(require(prefix + f.name), prefix + f.name));
    validate(new_options[g]);
  }

  std::vector<std::vector<ParamState>> new_state(groups_.size());
  size_t k = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::vector<std::string> names = buffer_names(new_options[g]);
    new_state[g].resize(groups_[g].params.size());
    for (size_t i = 0; i < groups_[g].params.size(); ++i, ++k) {
      const std::string prefix = "state." + std::to_string(k) + ".";
      const Tensor* step = take(prefix + "step");
      if (!step) continue;  // this parameter had not been updated yet
      const Tensor& p = groups_[g].params[i];
      ParamState& s = new_state[g][i];
      s.step = static_cast<int64_t>(scalar_of(*step, prefix + "step"));
      QSLIM_CHECK(s.step >= 0, op, ": entry '", prefix, "step' is negative (", s.step, ")");
      for (const std::string& b : names) {
        const Tensor& src = require(prefix + b);
        QSLIM_CHECK(src.shape() == p.shape(), op, ": entry '", prefix, b, "' has shape ", shape_str(src.shape()),
                    " but parameter ", k, " has shape ", shape_str(p.shape()));
        Tensor buf = Tensor::empty(p.shape(), p.dtype());
        buf.copy_(src);
        s.buffers.push_back(buf);
      }
    }
  }
  for (const auto& [key, t] : entries)
    QSLIM_CHECK(used.count(key), op, ": unexpected entry '", key, "' (", k, " parameters in ", groups_.size(),
                " groups)");

  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].options = new_options[g];
  initial_lr_ = std::move(new_initial);
  state_ = std::move(new_state);
}

}  // namespace qslim::optim
