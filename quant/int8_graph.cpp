#include "quant/int8_graph.h"

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

namespace {

Shape per_sample(const Shape& s) { return Shape(s.begin() + 1, s.end()); }

std::string module_label(const TracedNode& n) {
  if (n.kind == TracedNode::Kind::Reshape) return "reshape";
  return "'" + (n.name.empty() ? std::string("<root>") : n.name) + "' (" + n.module->type_name() + ")";
}

class Tracer : public nn::ModuleCallObserver {
 public:
  Tracer(nn::Module& model, const Tensor& example) : batch_(example.size(0)) {
    for (auto& [name, m] : model.named_modules()) {
      names_[m.get()] = name;
      if (dynamic_cast<const ConvertedLayer*>(m.get()) != nullptr) {
        auto inner = m->named_modules();
        for (size_t i = 1; i < inner.size(); ++i) inside_converted_.insert(inner[i].second.get());
      }
    }
    add_value(example, -1);
  }

  void on_call(const nn::Module& m, const std::vector<Tensor>& inputs, const Tensor& output) override {
    const bool converted = dynamic_cast<const ConvertedLayer*>(&m) != nullptr;
    if (!converted && !m.named_children().empty()) return;  // containers: their leaves are traced
    if (inside_converted_.count(&m)) return;                  // internals of a converted layer
    auto it = names_.find(&m);
    QSLIM_CHECK(it != names_.end(), "trace: a ", m.type_name(),
                " module that is not registered in the model was called during forward; register it as a child");
    TracedNode node;
    node.module = const_cast<nn::Module&>(m).weak_from_this().lock();
    QSLIM_CHECK(node.module != nullptr, "trace: ", m.type_name(), " '", it->second,
                "' is not owned by a shared_ptr; build the model with std::make_shared");
    node.name = it->second;
    for (size_t i = 0; i < inputs.size(); ++i) node.inputs.push_back(resolve(inputs[i], node, i));
    graph.nodes.push_back(node);
    const int idx = static_cast<int>(graph.nodes.size()) - 1;
    graph.nodes[idx].output = add_value(output, idx);
  }

  // The value a tensor holds: a traced value, or a reshape of one.
  int resolve(const Tensor& t, const TracedNode& consumer, size_t index) {
    auto it = by_impl_.find(t.impl_ptr().get());
    if (it != by_impl_.end()) return it->second;
    for (int v = static_cast<int>(recorded.size()) - 1; v >= 0; --v) {
      const Tensor& r = recorded[v];
      if (r.impl().storage.get() == t.impl().storage.get() && r.numel() == t.numel() && r.offset() == t.offset() &&
          r.is_contiguous() && t.is_contiguous() && t.dim() >= 1 && t.size(0) == batch_) {
        TracedNode node;
        node.kind = TracedNode::Kind::Reshape;
        node.name = "reshape";
        node.inputs = {v};
        graph.nodes.push_back(node);
        const int idx = static_cast<int>(graph.nodes.size()) - 1;
        graph.nodes[idx].output = add_value(t, idx);
        return graph.nodes[idx].output;
      }
    }
    QSLIM_FAIL("trace: input ", index, " ", shape_str(t.shape()), " of ", module_label(consumer),
               " was not produced by a module call nor is it a reshape of one; the forward applies a functional op "
               "the INT8 engine cannot trace (only flatten/reshape may sit between modules)");
  }

  int add_value(const Tensor& t, int producer) {
    QSLIM_CHECK(t.defined() && t.dim() >= 1 && t.size(0) == batch_, "trace: ",
                producer < 0 ? std::string("the example input") : module_label(graph.nodes[producer]), " gives ",
                t.defined() ? shape_str(t.shape()) : std::string("no tensor"), "; expected the batch (", batch_,
                ") as dimension 0");
    QSLIM_CHECK(t.dtype() == DType::F32, "trace: ",
                producer < 0 ? std::string("the example input") : module_label(graph.nodes[producer]),
                " gives a ", dtype_name(t.dtype()), " tensor; the INT8 engine traces f32 values");
    graph.values.push_back({per_sample(t.shape()), producer});
    recorded.push_back(t);
    const int id = static_cast<int>(graph.values.size()) - 1;
    by_impl_[t.impl_ptr().get()] = id;
    return id;
  }

  TracedGraph graph;
  std::vector<Tensor> recorded;  // keeps every traced tensor alive (so impl pointers stay unique)

 private:
  int64_t batch_;
  std::map<const nn::Module*, std::string> names_;
  std::set<const nn::Module*> inside_converted_;
  std::map<const TensorImpl*, int> by_impl_;
};

Tensor run_node(const TracedNode& n, const std::vector<Tensor>& in, const Shape& out_shape) {
  if (n.kind == TracedNode::Kind::Reshape) {
    Shape s{in[0].size(0)};
    s.insert(s.end(), out_shape.begin(), out_shape.end());
    return in[0].reshape(s);
  }
  return in.size() == 1 ? n.module->forward(in[0]) : n.module->forward(in);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector<float>()) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

double max_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return INFINITY;
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

}  // namespace

std::vector<std::vector<int>> TracedGraph::consumers() const {
  std::vector<std::vector<int>> c(values.size());
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int v : nodes[n].inputs) c[v].push_back(static_cast<int>(n));
  return c;
}

Tensor TracedGraph::replay(const Tensor& x) const {
  NoGradGuard no_grad;
  std::vector<Tensor> v(values.size());
  v[input] = x;
  for (const TracedNode& n : nodes) {
    std::vector<Tensor> in;
    for (int i : n.inputs) in.push_back(v[i]);
    v[n.output] = run_node(n, in, values[n.output].shape);
  }
  return v[output];
}

std::string TracedGraph::describe() const {
  std::ostringstream os;
  for (const TracedNode& n : nodes) {
    os << (n.kind == TracedNode::Kind::Reshape ? "reshape" : n.name + " " + n.module->type_name());
    for (size_t i = 0; i < n.inputs.size(); ++i) os << (i ? ", v" : " v") << n.inputs[i];
    os << " -> v" << n.output << " " << shape_str(values[n.output].shape) << "\n";
  }
  return os.str();
}

TracedGraph trace_model(nn::Module& model, const Tensor& example) {
  QSLIM_CHECK(example.defined() && example.dim() >= 2 && example.size(0) >= 1, "trace: the example input must be [N, ...]",
              " with N >= 1, got ", example.defined() ? shape_str(example.shape()) : std::string("no tensor"));
  QSLIM_CHECK(model.weak_from_this().lock() != nullptr, "trace: the ", model.type_name(),
              " model is not owned by a shared_ptr; build it with std::make_shared (the graph keeps its modules)");
  NoGradGuard no_grad;
  Tracer tracer(model, example);
  Tensor out;
  {
    nn::ScopedCallObserver scope(&tracer);
    out = model.forward(example);
  }
  TracedNode probe;
  probe.kind = TracedNode::Kind::Module;
  probe.module = model.weak_from_this().lock();
  probe.name = "";
  tracer.graph.output = tracer.resolve(out, probe, 0);
  TracedGraph g = std::move(tracer.graph);
  QSLIM_CHECK(!g.nodes.empty(), "trace: the forward of ", model.type_name(),
              " made no module calls through operator(); nothing to trace");

  // Replay node by node against the recorded tensors.
  std::vector<Tensor> v(g.values.size());
  v[g.input] = example;
  for (const TracedNode& n : g.nodes) {
    std::vector<Tensor> in;
    for (int i : n.inputs) in.push_back(v[i]);
    v[n.output] = run_node(n, in, g.values[n.output].shape);
    const Tensor& want = tracer.recorded[n.output];
    const double d = max_diff(v[n.output], want);
    QSLIM_CHECK(d <= 1e-5 * (1.0 + max_abs(want)), "trace: replaying the traced graph does not reproduce the output of ",
                module_label(n), " (max difference ", d,
                "); its inputs are changed by a functional op between modules that the INT8 engine cannot trace");
  }
  const double d = max_diff(v[g.output], out);
  QSLIM_CHECK(d <= 1e-5 * (1.0 + max_abs(out)), "trace: replaying the traced graph does not reproduce the output of ",
              model.type_name(), " (max difference ", d, "); its forward ends with an untraceable functional op");
  return g;
}

}  // namespace qslim::quant
