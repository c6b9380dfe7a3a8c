#include "quant/int8_plan.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "core/factory.h"
#include "core/random.h"
#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/flatten.h"
#include "nn/pooling.h"
#include "nn/residual.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

int32_t U8Grid::quantize(float x) const {
  const float inv = 1.0f / scale;
  const float v = std::nearbyint(x * inv) + static_cast<float>(zero_point);
  return static_cast<int32_t>(std::clamp(v, static_cast<float>(qmin), static_cast<float>(qmax)));
}

std::string U8Grid::to_string() const {
  std::ostringstream os;
  os << "u8(s=" << scale << ", z=" << zero_point << ", [" << qmin << ", " << qmax << "])";
  return os.str();
}

bool to_u8_grid(float scale, int64_t zero_point, const QuantGrid& grid, U8Grid* out) {
  if (grid.bits() > 8) return false;
  const int64_t offset = grid.is_unsigned() ? 0 : 128;
  out->scale = scale;
  out->zero_point = static_cast<int32_t>(zero_point + offset);
  out->qmin = static_cast<int32_t>(grid.qmin() + offset);
  out->qmax = static_cast<int32_t>(grid.qmax() + offset);
  return out->qmin >= 0 && out->qmax <= 255 && out->zero_point >= 0 && out->zero_point <= 255;
}

const char* plan_op_name(PlanOp op) {
  switch (op) {
    case PlanOp::ConvInt8: return "ConvInt8";
    case PlanOp::DepthwiseInt8: return "DepthwiseInt8";
    case PlanOp::LinearInt8: return "LinearInt8";
    case PlanOp::AddInt8: return "AddInt8";
    case PlanOp::ConcatInt8: return "ConcatInt8";
    case PlanOp::ClampInt8: return "ClampInt8";
    case PlanOp::MaxPoolInt8: return "MaxPoolInt8";
    case PlanOp::GlobalPoolInt8: return "GlobalPoolInt8";
    case PlanOp::LutInt8: return "LutInt8";
    case PlanOp::ResidualAddInt8: return "ResidualAddInt8";
    case PlanOp::AddF32: return "AddF32";
    case PlanOp::Clamp: return "Clamp";
    case PlanOp::MaxPool: return "MaxPool";
    case PlanOp::GlobalPool: return "GlobalPool";
    case PlanOp::Alias: return "Alias";
    case PlanOp::Reshape: return "Reshape";
    case PlanOp::Float: return "Float";
  }
  return "?";
}

namespace {

bool grid_of(const ConvertedLayer& layer, const QuantParams& p, U8Grid* g) {
  (void)layer;
  return to_u8_grid(static_cast<float>(p.scales()[0]), p.zero_points()[0], p.grid, g);
}

bool is_alias(const nn::Module& m) {
  if (dynamic_cast<const nn::Identity*>(&m)) return true;
  return dynamic_cast<const nn::Dropout*>(&m) != nullptr && !m.is_training();
}

bool is_global_pool(const nn::AdaptiveAvgPool2D* p) { return p && p->output_size() == nn::Size2(1, 1); }

// Classifies one traced module node (inputs/outputs already known).
PlanNode classify(const TracedGraph& g, int n) {
  const TracedNode& t = g.nodes[n];
  PlanNode p;
  p.traced = n;
  p.inputs = t.inputs;
  p.output = t.output;
  if (t.kind == TracedNode::Kind::Reshape) {
    p.op = PlanOp::Reshape;
    return p;
  }
  const nn::Module& m = *t.module;
  const auto rank = [&](int i) { return static_cast<int64_t>(g.values[t.inputs[i]].shape.size()); };
  if (auto* c = dynamic_cast<const ConvertedConv2D*>(&m)) {
    U8Grid gi;
    const Tensor w = c->buffer("weight");
    const Conv2dParams& cp = c->conv_params();
    if (w.dtype() == DType::I8 && grid_of(*c, c->input_params(), &gi) && rank(0) == 3) {
      const int64_t out = w.size(0), in = c->in_channels();
      if (cp.groups == 1) p.op = PlanOp::ConvInt8;
      else if (cp.groups == in && out == in) p.op = PlanOp::DepthwiseInt8;
      else return p;
      p.in_grids = {gi};
    }
    return p;
  }
  if (auto* l = dynamic_cast<const ConvertedLinear*>(&m)) {
    U8Grid gi;
    if (l->buffer("weight").dtype() == DType::I8 && grid_of(*l, l->input_params(), &gi) && rank(0) == 1) {
      p.op = PlanOp::LinearInt8;
      p.in_grids = {gi};
    }
    return p;
  }
  if (auto* op = dynamic_cast<const ConvertedOp*>(&m)) {
    std::vector<U8Grid> grids;
    for (size_t i = 0; i < op->num_points(); ++i) {
      U8Grid gi;
      if (!grid_of(*op, op->point_params(i), &gi)) return p;
      grids.push_back(gi);
    }
    const nn::Module& inner = op->child("op");
    const std::string& type = op->source_type();
    const bool inputs = op->point() == OpQuantPoint::Inputs;
    if (type == "Add" && inputs && grids.size() == 2 && t.inputs.size() == 2 &&
        g.values[t.inputs[0]].shape == g.values[t.inputs[1]].shape) {
      p.op = PlanOp::AddInt8;
    } else if (type == "Concat" && !inputs && dynamic_cast<const nn::Concat*>(&inner) &&
               (static_cast<const nn::Concat&>(inner).dim() == 1) && g.values[t.output].shape.size() == 3) {
      bool ok = true;
      for (size_t i = 0; i < t.inputs.size(); ++i) ok = ok && rank(static_cast<int>(i)) == 3;
      if (!ok) return p;
      p.op = PlanOp::ConcatInt8;
    } else if ((type == "ReLU" || type == "ReLU6") && inputs && t.inputs.size() == 1) {
      p.op = PlanOp::ClampInt8;
      p.lo = 0.0f;
      if (type == "ReLU6") p.hi = 6.0f;
    } else if (type == "MaxPool2D" && inputs && t.inputs.size() == 1 && rank(0) == 3) {
      p.op = PlanOp::MaxPoolInt8;
    } else if (type == "AdaptiveAvgPool2D" && inputs && t.inputs.size() == 1 && rank(0) == 3 &&
               is_global_pool(dynamic_cast<const nn::AdaptiveAvgPool2D*>(&inner))) {
      p.op = PlanOp::GlobalPoolInt8;
    } else if (inputs && t.inputs.size() == 1 &&
               (type == "Sigmoid" || type == "Tanh" || type == "Hardswish" || type == "Hardsigmoid" ||
                type == "SiLU" || type == "GELU" || type == "LeakyReLU")) {
      p.op = PlanOp::LutInt8;
    } else {
      return p;
    }
    p.in_grids = grids;
    return p;
  }
  if (dynamic_cast<const nn::Add*>(&m) && t.inputs.size() == 2 &&
      g.values[t.inputs[0]].shape == g.values[t.inputs[1]].shape) {
    p.op = PlanOp::AddF32;
  } else if (dynamic_cast<const nn::ReLU*>(&m)) {
    p.op = PlanOp::Clamp;
    p.lo = 0.0f;
  } else if (dynamic_cast<const nn::ReLU6*>(&m)) {
    p.op = PlanOp::Clamp;
    p.lo = 0.0f;
    p.hi = 6.0f;
  } else if (dynamic_cast<const nn::MaxPool2D*>(&m) && rank(0) == 3) {
    p.op = PlanOp::MaxPool;
  } else if (is_global_pool(dynamic_cast<const nn::AdaptiveAvgPool2D*>(&m)) && rank(0) == 3) {
    p.op = PlanOp::GlobalPool;
  } else if (is_alias(m)) {
    p.op = PlanOp::Alias;
  } else if (dynamic_cast<const nn::Flatten*>(&m)) {
    p.op = PlanOp::Reshape;
  }
  return p;
}

// Folds an eval-mode BatchNorm2D into the node's per-channel affine epilogue; false if it cannot.
bool fold_batchnorm(const nn::Module& m, PlanNode& p) {
  auto* bn = dynamic_cast<const nn::BatchNorm2D*>(&m);
  if (!bn || bn->is_training() || !bn->track_running_stats() || !p.bn_scale.empty()) return false;
  if (std::isfinite(p.lo) || std::isfinite(p.hi)) return false;  // BN after a clamp does not fold
  const auto mean = bn->buffer("running_mean").to_vector<float>();
  const auto var = bn->buffer("running_var").to_vector<float>();
  std::vector<float> w(mean.size(), 1.0f), b(mean.size(), 0.0f);
  if (bn->affine()) {
    w = bn->param("weight").to_vector<float>();
    b = bn->param("bias").to_vector<float>();
  }
  p.bn_scale.resize(mean.size());
  p.bn_shift.resize(mean.size());
  for (size_t c = 0; c < mean.size(); ++c) {
    const double a = w[c] / std::sqrt(static_cast<double>(var[c]) + bn->eps());
    p.bn_scale[c] = static_cast<float>(a);
    p.bn_shift[c] = static_cast<float>(b[c] - mean[c] * a);
  }
  return true;
}

}  // namespace

std::string Int8Plan::describe() const {
  std::ostringstream os;
  for (const PlanNode& p : nodes) {
    const TracedNode& t = graph.nodes[p.traced];
    os << (t.kind == TracedNode::Kind::Reshape ? "reshape" : t.name) << " " << plan_op_name(p.op);
    for (int f : p.fused) os << " +" << graph.nodes[f].name;
    if (!p.bn_scale.empty()) os << " (bn folded)";
    os << " -> ";
    if (p.out.kind == Want::Kind::U8) os << p.out.grid.to_string();
    else if (p.out.kind == Want::Kind::F32) os << "f32";
    else os << "as input";
    os << " " << shape_str(graph.values[p.output].shape) << "\n";
  }
  return os.str();
}

int Int8Plan::count(PlanOp op) const {
  return static_cast<int>(std::count_if(nodes.begin(), nodes.end(), [op](const PlanNode& p) { return p.op == op; }));
}

bool branch_grid_for_residual_add(const U8Grid& out, const U8Grid& skip, U8Grid* branch) {
  const auto lo_of = [](const U8Grid& g) { return (g.qmin - g.zero_point) * static_cast<double>(g.scale); };
  const auto hi_of = [](const U8Grid& g) { return (g.qmax - g.zero_point) * static_cast<double>(g.scale); };
  const double lo = std::min(0.0, lo_of(out) - hi_of(skip)), hi = std::max(0.0, hi_of(out) - lo_of(skip));
  if (!(hi > lo) || !std::isfinite(hi - lo)) return false;
  // 254 steps over the span leave the ceil of the zero point room: (0 - z) s <= lo, (255 - z) s >= hi.
  const float scale = static_cast<float>((hi - lo) / 254.0);
  if (!(scale > 0.0f) || !std::isfinite(scale)) return false;
  const double z = std::ceil(-lo / scale);
  if (z < 0 || z > 255) return false;
  branch->scale = scale;
  branch->zero_point = static_cast<int32_t>(z);
  branch->qmin = 0;
  branch->qmax = 255;
  return (0 - z) * scale <= lo + 1e-6 * (hi - lo) && (255 - z) * scale >= hi - 1e-6 * (hi - lo);
}

Int8Plan plan_int8(nn::Module& model, const Shape& input_shape, const Int8PlanOptions& options) {
  QSLIM_CHECK(!input_shape.empty(), "plan_int8: the input shape (per sample, e.g. [1, 28, 28]) is empty");
  for (int64_t d : input_shape) QSLIM_CHECK(d > 0, "plan_int8: invalid input shape ", shape_str(input_shape));
  Shape s{2};
  s.insert(s.end(), input_shape.begin(), input_shape.end());
  Generator gen(1234);
  Int8Plan plan;
  plan.graph = trace_model(model, randn(s, DType::F32, &gen));
  const TracedGraph& g = plan.graph;
  const auto consumers = g.consumers();
  const auto single_consumer = [&](int v) -> int {
    return (v != g.output && consumers[v].size() == 1) ? consumers[v][0] : -1;
  };

  // Classify and fuse.
  std::vector<bool> absorbed(g.nodes.size(), false);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (absorbed[n]) continue;
    PlanNode p = classify(g, static_cast<int>(n));
    const bool weight_layer = p.op == PlanOp::ConvInt8 || p.op == PlanOp::DepthwiseInt8 || p.op == PlanOp::LinearInt8;
    const bool add = p.op == PlanOp::AddInt8 || p.op == PlanOp::AddF32;
    if (weight_layer || add) {
      for (int c = single_consumer(p.output); c >= 0; c = single_consumer(p.output)) {
        const TracedNode& t = g.nodes[c];
        if (t.kind != TracedNode::Kind::Module) break;
        const nn::Module& m = *t.module;
        if (is_alias(m)) {
        } else if (dynamic_cast<const nn::ReLU*>(&m)) {
          p.lo = std::max(p.lo, 0.0f);
        } else if (dynamic_cast<const nn::ReLU6*>(&m)) {
          p.lo = std::max(p.lo, 0.0f);
          p.hi = std::min(p.hi, 6.0f);
        } else if (!(p.op == PlanOp::ConvInt8 || p.op == PlanOp::DepthwiseInt8) || !fold_batchnorm(m, p)) {
          break;
        }
        p.fused.push_back(c);
        absorbed[c] = true;
        p.output = t.output;
      }
    }
    plan.nodes.push_back(std::move(p));
  }

  // Who consumes each value after fusion (plan node, input position).
  std::vector<std::vector<std::pair<int, int>>> users(g.values.size());
  for (size_t i = 0; i < plan.nodes.size(); ++i)
    for (size_t k = 0; k < plan.nodes[i].inputs.size(); ++k)
      users[plan.nodes[i].inputs[k]].push_back({static_cast<int>(i), static_cast<int>(k)});

  // Residual add candidates: a float add with exactly one input (the branch) produced by an integer
  // weight layer that nothing else reads; branch_of[i] is that input's position, else -1.
  std::vector<int> producer(g.values.size(), -1);
  for (size_t i = 0; i < plan.nodes.size(); ++i) producer[plan.nodes[i].output] = static_cast<int>(i);
  const auto weight_op = [](PlanOp op) {
    return op == PlanOp::ConvInt8 || op == PlanOp::DepthwiseInt8 || op == PlanOp::LinearInt8;
  };
  std::vector<int> branch_of(plan.nodes.size(), -1);
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const PlanNode& p = plan.nodes[i];
    if (!options.integer_residual_adds || p.op != PlanOp::AddF32 || p.inputs.size() != 2 ||
        p.inputs[0] == p.inputs[1])
      continue;
    int branch = -1, count = 0;
    for (int k = 0; k < 2; ++k) {
      const int v = p.inputs[k];
      if (v != g.output && producer[v] >= 0 && weight_op(plan.nodes[producer[v]].op) && users[v].size() == 1) {
        branch = k;
        ++count;
      }
    }
    if (count == 1) branch_of[i] = branch;
  }

  std::map<int, Want> memo;
  std::function<Want(int)> want_of = [&](int v) -> Want {
    auto it = memo.find(v);
    if (it != memo.end()) return it->second;
    std::vector<Want> wants;
    if (v == g.output) wants.push_back({Want::Kind::F32, {}});
    for (auto [i, k] : users[v]) {
      const PlanNode& c = plan.nodes[i];
      switch (c.op) {
        case PlanOp::ConvInt8:
        case PlanOp::DepthwiseInt8:
        case PlanOp::LinearInt8:
        case PlanOp::ClampInt8:
        case PlanOp::MaxPoolInt8:
        case PlanOp::GlobalPoolInt8:
        case PlanOp::LutInt8:
        case PlanOp::ConcatInt8:
          wants.push_back({Want::Kind::U8, c.in_grids[0]});
          break;
        case PlanOp::AddInt8:
          wants.push_back({Want::Kind::U8, c.in_grids[k]});
          break;
        case PlanOp::Clamp:
        case PlanOp::MaxPool:
        case PlanOp::Alias:
        case PlanOp::Reshape:
          wants.push_back(want_of(c.output));
          break;
        case PlanOp::AddF32:
          // A candidate's skip input is read as whatever the engine holds (see the header).
          if (branch_of[i] >= 0 && branch_of[i] != k) break;
          wants.push_back({Want::Kind::F32, {}});
          break;
        case PlanOp::ResidualAddInt8:  // planned below, after every want is known
        case PlanOp::GlobalPool:
        case PlanOp::Float:
          wants.push_back({Want::Kind::F32, {}});
          break;
      }
    }
    Want w;
    for (const Want& x : wants) {
      if (x.kind == Want::Kind::Any) continue;
      if (w.kind == Want::Kind::Any) {
        w = x;
      } else if (!(w == x)) {
        w = {Want::Kind::F32, {}};
      }
    }
    memo[v] = w;
    return w;
  };

  const auto clamped = [](U8Grid gr, float lo, float hi) {
    gr.qmin = std::max(gr.qmin, std::isfinite(lo) ? gr.quantize(lo) : gr.qmin);
    gr.qmax = std::min(gr.qmax, std::isfinite(hi) ? gr.quantize(hi) : gr.qmax);
    return gr;
  };
  for (PlanNode& p : plan.nodes) {
    const Want w = want_of(p.output);
    switch (p.op) {
      case PlanOp::ConvInt8:
      case PlanOp::DepthwiseInt8:
      case PlanOp::LinearInt8:
      case PlanOp::AddInt8:
      case PlanOp::GlobalPoolInt8:
      case PlanOp::LutInt8:
        if (w.kind == Want::Kind::U8) {
          p.out = w;
          p.out.grid.qmin = std::max(w.grid.qmin, std::isfinite(p.lo) ? w.grid.quantize(p.lo) : w.grid.qmin);
          p.out.grid.qmax = std::min(w.grid.qmax, std::isfinite(p.hi) ? w.grid.quantize(p.hi) : w.grid.qmax);
        } else {
          p.out = {Want::Kind::F32, {}};
        }
        break;
      case PlanOp::ConcatInt8:
        p.out = {Want::Kind::U8, p.in_grids[0]};
        break;
      case PlanOp::ClampInt8: {
        U8Grid gr = p.in_grids[0];
        gr.qmin = std::max(gr.qmin, gr.quantize(p.lo));
        if (std::isfinite(p.hi)) gr.qmax = std::min(gr.qmax, gr.quantize(p.hi));
        p.out = {Want::Kind::U8, gr};
        break;
      }
      case PlanOp::MaxPoolInt8:
        p.out = {Want::Kind::U8, p.in_grids[0]};
        break;
      case PlanOp::AddF32:  // a float sum, written straight onto the one grid its consumers want
        p.out = w.kind == Want::Kind::U8 ? Want{Want::Kind::U8, clamped(w.grid, p.lo, p.hi)} : Want{Want::Kind::F32, {}};
        break;
      case PlanOp::ResidualAddInt8:
      case PlanOp::GlobalPool:
      case PlanOp::Float:
        p.out = {Want::Kind::F32, {}};
        break;
      case PlanOp::Clamp:
      case PlanOp::MaxPool:
      case PlanOp::Alias:
      case PlanOp::Reshape:
        p.out = {Want::Kind::Any, {}};
        break;
    }
  }

  // Residual adds on integers, in execution order (a promoted add's output grid is the skip grid of
  // the next block's add).
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    PlanNode& p = plan.nodes[i];
    if (branch_of[i] < 0) continue;
    const Want w = want_of(p.output);
    const int kb = branch_of[i], ks = 1 - kb;
    const int skip_node = producer[p.inputs[ks]];
    if (w.kind != Want::Kind::U8 || skip_node < 0) continue;
    // The skip as the engine holds it in uint8: the output of an integer node, or the quantized copy a
    // float add makes for its integer consumers (clamped by the add's ReLU).
    const PlanNode& sp = plan.nodes[skip_node];
    const Want skip_want = want_of(p.inputs[ks]);
    U8Grid skip;
    if (sp.out.kind == Want::Kind::U8) skip = sp.out.grid;
    else if (sp.op == PlanOp::AddF32 && skip_want.kind == Want::Kind::U8) skip = clamped(skip_want.grid, sp.lo, sp.hi);
    else continue;
    const U8Grid out = clamped(w.grid, p.lo, p.hi);
    U8Grid branch;
    if (!branch_grid_for_residual_add(out, skip, &branch)) continue;
    PlanNode& b = plan.nodes[producer[p.inputs[kb]]];
    p.op = PlanOp::ResidualAddInt8;
    p.out = {Want::Kind::U8, out};
    p.in_grids.assign(2, U8Grid());
    p.in_grids[ks] = skip;
    p.in_grids[kb] = branch;
    b.out = {Want::Kind::U8, clamped(branch, b.lo, b.hi)};
  }
  return plan;
}

}  // namespace qslim::quant
