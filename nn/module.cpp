#include "nn/module.h"

#include <sstream>
#include <unordered_set>

#include "autograd/grad_mode.h"

namespace qslim::nn {

namespace {

template <typename V>
auto find_named(V& items, const std::string& name) {
  for (auto it = items.begin(); it != items.end(); ++it)
    if (it->first == name) return it;
  return items.end();
}

template <typename V>
std::string list_names(const V& items) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < items.size(); ++i) os << (i ? ", " : "") << items[i].first;
  os << "]";
  return os.str();
}

std::string join_names(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << names[i];
  return os.str();
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::vector<std::string> split_dots(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

}  // namespace

namespace {
thread_local ModuleCallObserver* t_call_observer = nullptr;
}  // namespace

ScopedCallObserver::ScopedCallObserver(ModuleCallObserver* observer) : previous_(t_call_observer) {
  t_call_observer = observer;
}
ScopedCallObserver::~ScopedCallObserver() { t_call_observer = previous_; }

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (ModuleCallObserver* o = t_call_observer) o->on_call(*this, {x}, y);
  return y;
}

Tensor Module::operator()(const std::vector<Tensor>& xs) {
  Tensor y = forward(xs);
  if (ModuleCallObserver* o = t_call_observer) o->on_call(*this, xs, y);
  return y;
}

Tensor Module::forward(const Tensor& x) {
  QSLIM_FAIL(type_name(), ": forward(Tensor) is not implemented by this module (input ", shape_str(x.shape()),
             "); multi-input modules take a vector of tensors");
}

Tensor Module::forward(const std::vector<Tensor>& xs) {
  QSLIM_CHECK(xs.size() == 1, type_name(), ": takes a single input, got ", xs.size());
  return forward(xs[0]);
}

// ---- registration ----

namespace {
void check_new_name(const Module& m, const std::string& name, bool taken) {
  QSLIM_CHECK(!name.empty(), m.type_name(), ": cannot register an empty name");
  QSLIM_CHECK(name.find('.') == std::string::npos, m.type_name(), ": name '", name, "' must not contain '.'");
  QSLIM_CHECK(!taken, m.type_name(), ": name '", name, "' is already registered");
}
}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(*this, name, has_param(name) || has_buffer(name) || has_child(name));
  QSLIM_CHECK(t.defined(), type_name(), ": parameter '", name, "' is an undefined tensor");
  QSLIM_CHECK(t.is_leaf(), type_name(), ": parameter '", name, "' must be a leaf tensor (detach it first)");
  if (t.is_floating_point()) t.set_requires_grad(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(*this, name, has_param(name) || has_buffer(name) || has_child(name));
  QSLIM_CHECK(t.defined(), type_name(), ": buffer '", name, "' is an undefined tensor");
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(*this, name, has_param(name) || has_buffer(name) || has_child(name));
  QSLIM_CHECK(m != nullptr, type_name(), ": child '", name, "' is null");
  children_.emplace_back(name, std::move(m));
}

// ---- access ----

std::shared_ptr<Module> Module::child_ptr(const std::string& name) const {
  auto it = find_named(children_, name);
  QSLIM_CHECK(it != children_.end(), type_name(), ": no child named '", name, "'; children are ",
              list_names(children_));
  return it->second;
}

Module& Module::child(const std::string& name) const { return *child_ptr(name); }

bool Module::has_child(const std::string& name) const { return find_named(children_, name) != children_.end(); }
bool Module::has_param(const std::string& name) const { return find_named(params_, name) != params_.end(); }
bool Module::has_buffer(const std::string& name) const { return find_named(buffers_, name) != buffers_.end(); }

Tensor Module::param(const std::string& name) const {
  auto it = find_named(params_, name);
  QSLIM_CHECK(it != params_.end(), type_name(), ": no parameter named '", name, "'; parameters are ",
              list_names(params_));
  return it->second;
}

Tensor Module::buffer(const std::string& name) const {
  auto it = find_named(buffers_, name);
  QSLIM_CHECK(it != buffers_.end(), type_name(), ": no buffer named '", name, "'; buffers are ", list_names(buffers_));
  return it->second;
}

void Module::set_param(const std::string& name, const Tensor& t) {
  auto it = find_named(params_, name);
  QSLIM_CHECK(it != params_.end(), type_name(), ": set_param: no parameter named '", name, "'; parameters are ",
              list_names(params_));
  QSLIM_CHECK(t.defined(), type_name(), ": set_param: '", name, "' set to an undefined tensor");
  it->second = t;
}

void Module::set_buffer(const std::string& name, const Tensor& t) {
  auto it = find_named(buffers_, name);
  QSLIM_CHECK(it != buffers_.end(), type_name(), ": set_buffer: no buffer named '", name, "'; buffers are ",
              list_names(buffers_));
  QSLIM_CHECK(t.defined(), type_name(), ": set_buffer: '", name, "' set to an undefined tensor");
  it->second = t;
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;  // a tensor shared by two modules is listed once
  auto visit = [&](const Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [n, t] : m.params_)
      if (seen.insert(t.impl_ptr().get()).second) out.emplace_back(dotted(prefix, n), t);
    if (!recurse) return;
    for (const auto& [n, c] : m.children_) self(*c, dotted(prefix, n), self);
  };
  visit(*this, "", visit);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  auto visit = [&](const Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [n, t] : m.buffers_) out.emplace_back(dotted(prefix, n), t);
    if (!recurse) return;
    for (const auto& [n, c] : m.children_) self(*c, dotted(prefix, n), self);
  };
  visit(*this, "", visit);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  std::unordered_set<const Module*> seen;
  auto visit = [&](const std::shared_ptr<Module>& m, const std::string& name, auto&& self) -> void {
    if (!seen.insert(m.get()).second) return;
    out.emplace_back(name, m);
    for (const auto& [n, c] : m->children_) self(c, dotted(name, n), self);
  };
  // The root may not be owned by a shared_ptr (e.g. a stack object); alias it without ownership.
  std::shared_ptr<Module> self_ptr = weak_from_this().lock();
  if (!self_ptr) self_ptr = std::shared_ptr<Module>(std::shared_ptr<Module>(), this);
  visit(self_ptr, prefix, visit);
  return out;
}

std::shared_ptr<Module> Module::get_submodule(const std::string& path) {
  if (path.empty()) {
    std::shared_ptr<Module> self_ptr = weak_from_this().lock();
    return self_ptr ? self_ptr : std::shared_ptr<Module>(std::shared_ptr<Module>(), this);
  }
  std::shared_ptr<Module> cur;
  const Module* at = this;
  std::string walked;
  for (const std::string& part : split_dots(path)) {
    auto it = find_named(at->children_, part);
    QSLIM_CHECK(it != at->children_.end(), "get_submodule('", path, "'): ",
                walked.empty() ? std::string("the root ") + type_name() : "'" + walked + "' (" + at->type_name() + ")",
                " has no child '", part, "'; its children are ", list_names(at->children_));
    cur = it->second;
    at = cur.get();
    walked = dotted(walked, part);
  }
  return cur;
}

void Module::replace_submodule(const std::string& path, std::shared_ptr<Module> m) {
  QSLIM_CHECK(!path.empty(), "replace_submodule: cannot replace the root module");
  QSLIM_CHECK(m != nullptr, "replace_submodule('", path, "'): new module is null");
  size_t dot = path.rfind('.');
  std::shared_ptr<Module> parent_holder;
  Module* parent = this;
  if (dot != std::string::npos) {
    parent_holder = get_submodule(path.substr(0, dot));
    parent = parent_holder.get();
  }
  const std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
  auto it = find_named(parent->children_, leaf);
  QSLIM_CHECK(it != parent->children_.end(), "replace_submodule('", path, "'): ", parent->type_name(),
              " has no child '", leaf, "'; its children are ", list_names(parent->children_));
  it->second = std::move(m);
}

// ---- modes ----

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

// ---- state ----

NamedTensors Module::state_dict() const {
  NamedTensors out;
  auto visit = [&](const Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [n, t] : m.params_) out.emplace_back(dotted(prefix, n), t.detach());
    for (const auto& [n, t] : m.buffers_) out.emplace_back(dotted(prefix, n), t.detach());
    for (const auto& [n, c] : m.children_) self(*c, dotted(prefix, n), self);
  };
  visit(*this, "", visit);
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  NamedTensors own = state_dict();
  std::vector<std::string> missing, unexpected, mismatched, duplicated;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source), applied only if all checks pass
  std::unordered_set<std::string> given;
  for (const auto& [name, t] : state)
    if (!given.insert(name).second) duplicated.push_back(name);
  for (const auto& [name, dst] : own) {
    auto it = find_named(state, name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined()) {
      mismatched.push_back(name + ": the given tensor is undefined");
    } else if (src.shape() != dst.shape()) {
      mismatched.push_back(name + ": checkpoint shape " + shape_str(src.shape()) + " vs model shape " +
                           shape_str(dst.shape()));
    } else if (strict && src.dtype() != dst.dtype()) {
      mismatched.push_back(name + ": checkpoint dtype " + dtype_name(src.dtype()) + " vs model dtype " +
                           dtype_name(dst.dtype()));
    } else {
      copies.emplace_back(dst, src);
    }
  }
  std::unordered_set<std::string> known;
  for (const auto& [name, t] : own) known.insert(name);
  for (const auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);

  std::vector<std::string> problems;
  if (!mismatched.empty()) problems.push_back("size/dtype mismatch for " + join_names(mismatched));
  if (!duplicated.empty()) problems.push_back("duplicated keys: " + join_names(duplicated));
  if (strict && !missing.empty()) problems.push_back("missing keys: " + join_names(missing));
  if (strict && !unexpected.empty()) problems.push_back("unexpected keys: " + join_names(unexpected));
  if (!problems.empty()) {
    std::string msg;
    for (const std::string& p : problems) msg += (msg.empty() ? "" : "; ") + p;
    QSLIM_FAIL("load_state_dict into ", type_name(), ": ", msg);
  }

  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.set_grad(Tensor());
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

std::string Module::to_string() const {
  std::ostringstream os;
  const std::string extra = extra_repr();
  os << type_name() << "(";
  if (children_.empty()) {
    os << extra;
  } else {
    os << "\n";
    if (!extra.empty()) os << "  " << extra << "\n";
    for (const auto& [n, c] : children_) {
      std::string sub = c->to_string();
      std::string indented;
      for (char ch : sub) {
        indented += ch;
        if (ch == '\n') indented += "  ";
      }
      os << "  (" << n << "): " << indented << "\n";
    }
  }
  os << ")";
  return os.str();
}

}  // namespace qslim::nn
