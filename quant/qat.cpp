#include "quant/qat.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "quant/conv_bn_fold.h"
#include "quant/converted_layers.h"
#include "quant/quant_layers.h"

namespace qslim::quant {

namespace {

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

bool is_quantized_module(const nn::Module& m) {
  return dynamic_cast<const QuantedLayer*>(&m) || dynamic_cast<const ConvertedLayer*>(&m) ||
         dynamic_cast<const FoldedBatchNorm2D*>(&m);
}

// Every module below the root with its dotted name, parents before children (shared modules once).
std::vector<std::pair<std::string, const nn::Module*>> all_modules(const nn::Module& root) {
  std::vector<std::pair<std::string, const nn::Module*>> out;
  std::unordered_set<const nn::Module*> seen{&root};
  auto visit = [&](const nn::Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [n, c] : m.named_children()) {
      if (!seen.insert(c.get()).second) continue;
      out.emplace_back(dotted(prefix, n), c.get());
      self(*c, dotted(prefix, n), self);
    }
  };
  visit(root, "", visit);
  return out;
}

std::string list_names(const std::vector<std::string>& names, size_t limit = 12) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

struct Planner {
  const QuantConfig& config;
  std::vector<PlannedLayer> plan;
  std::unordered_map<const nn::Module*, std::string> skipped;  // module -> why
  std::unordered_set<const nn::Module*> planned, folded;

  std::string skip_reason(const nn::Module* m, const std::string& name, const std::string& scope) const {
    if (!scope.empty()) return scope;
    for (const std::string& p : config.settings().not_quant_pattern)
      if (name.find(p) != std::string::npos) return "its name contains not_quant_pattern '" + p + "'";
    if (config.skipped_layer(m)) return "it was passed to QuantConfig::skip";
    return "";
  }

  void visit(const nn::Module& parent, const std::string& prefix, const std::string& scope) {
    const auto children = parent.named_children();  // a copy: fold detection looks ahead
    for (size_t i = 0; i < children.size(); ++i) {
      const auto& [leaf, child] = children[i];
      const std::string name = dotted(prefix, leaf);
      if (folded.count(child.get())) continue;
      const std::string why = skip_reason(child.get(), name, scope);
      if (!why.empty()) skipped.emplace(child.get(), why);
      const std::string qt = QuantConfig::quant_type_of(*child);
      if (why.empty() && config.has_mapping(qt)) {
        bool matched = false;
        ResolvedQuant q = config.resolve(child.get(), name, qt, &matched);
        if (config.quantizes_type(qt) || matched) {
          QSLIM_CHECK(planned.insert(child.get()).second, "quant_aware: module '", name,
                      "' is registered under two names; a shared layer cannot be wrapped twice");
          PlannedLayer p{name, qt, std::move(q), ""};
          if (i + 1 < children.size()) p.folded_bn = fold_partner(*child, qt, children[i + 1], prefix, scope);
          if (!p.folded_bn.empty()) folded.insert(children[i + 1].second.get());
          plan.push_back(std::move(p));
          continue;
        }
      }
      visit(*child, name, why);
    }
  }

  // The dotted name of the BatchNorm2D that follows a conv and can be folded into it, or "".
  std::string fold_partner(const nn::Module& m, const std::string& qt,
                           const std::pair<std::string, nn::ModulePtr>& next, const std::string& prefix,
                           const std::string& scope) const {
    if (!config.settings().fold_bn || (qt != "Conv2D" && qt != "DepthwiseConv2D") || config.has_custom_mapping(qt))
      return "";
    const auto* conv = dynamic_cast<const nn::Conv2D*>(&m);
    const auto* bn = dynamic_cast<const nn::BatchNorm2D*>(next.second.get());
    if (!conv || !bn || bn->num_features() != conv->out_channels() || !bn->track_running_stats()) return "";
    const std::string name = dotted(prefix, next.first);
    if (!skip_reason(bn, name, scope).empty()) return "";
    return name;
  }
};

void check_rules(const nn::Module& model, const QuantConfig& config, const Planner& planner) {
  const auto modules = all_modules(model);
  std::vector<std::string> quantizable;
  for (const auto& [name, m] : modules)
    if (config.has_mapping(QuantConfig::quant_type_of(*m))) quantizable.push_back(name);
  auto why_not = [&](const nn::Module* m, const std::string& name, const std::string& rule) {
    if (planner.planned.count(m)) return;
    auto s = planner.skipped.find(m);
    QSLIM_CHECK(s == planner.skipped.end(), "quant_aware: ", rule, " matches '", name, "' (", m->type_name(),
                "), which is skipped because ", s->second);
    QSLIM_CHECK(!planner.folded.count(m), "quant_aware: ", rule, " matches '", name,
                "', a BatchNorm2D folded into the preceding conv (fold_bn); put the rule on the conv");
    QSLIM_FAIL("quant_aware: ", rule, " matches '", name, "' (", m->type_name(),
               "), which has no QAT mapping; quantizable layers of this model: ", list_names(quantizable));
  };
  for (const auto& [name, rule] : config.name_rules()) {
    auto it = std::find_if(modules.begin(), modules.end(), [&](const auto& e) { return e.first == name; });
    QSLIM_CHECK(it != modules.end(), "quant_aware: name rule '", name,
                "' matches no module in the model; quantizable layers: ", list_names(quantizable));
    why_not(it->second, name, "name rule '" + name + "'");
  }
  for (const auto& [layer, rule] : config.layer_rules()) {
    auto it = std::find_if(modules.begin(), modules.end(), [&](const auto& e) { return e.second == layer; });
    QSLIM_CHECK(it != modules.end(), "quant_aware: layer rule on a ", layer->type_name(),
                " matches no module in the model (rules hold the module object itself, not a copy)");
    why_not(layer, it->first, "layer rule on '" + it->first + "'");
  }
  for (const auto& [type, rule] : config.type_rules())
    QSLIM_CHECK(config.has_mapping(type), "quant_aware: type rule '", type,
                "' names no quantizable type; built-in types: ", list_names(quantizable_types(), 100),
                " (or add_qat_layer_mapping for a custom type)");
}

}  // namespace

std::vector<PlannedLayer> plan_quant_aware(nn::Module& model, const QuantConfig& config) {
  for (const auto& [name, m] : all_modules(model))
    QSLIM_CHECK(!is_quantized_module(*m), "quant_aware: the model is already quantized ('", name, "' is a ",
                m->type_name(), ")");
  QSLIM_CHECK(!is_quantized_module(model), "quant_aware: the model is already quantized (the root is a ",
              model.type_name(), ")");
  Planner planner{config, {}, {}, {}, {}};
  planner.visit(model, "", config.skipped_layer(&model) ? "the whole model was passed to QuantConfig::skip" : "");
  check_rules(model, config, planner);
  return planner.plan;
}

void quant_aware(nn::Module& model, const QuantConfig& config) {
  const std::vector<PlannedLayer> plan = plan_quant_aware(model, config);
  // Build every wrapper before replacing anything, so a failure leaves the model untouched.
  std::vector<std::pair<std::string, nn::ModulePtr>> replacements;
  for (const PlannedLayer& p : plan) {
    nn::ModulePtr layer = model.get_submodule(p.name);
    try {
      if (!p.folded_bn.empty()) {
        auto conv = std::dynamic_pointer_cast<nn::Conv2D>(layer);
        auto bn = std::dynamic_pointer_cast<nn::BatchNorm2D>(model.get_submodule(p.folded_bn));
        QSLIM_CHECK(conv && bn, "conv + batch norm pair changed while planning");
        auto folded = std::make_shared<FoldedBatchNorm2D>(*bn);
        replacements.emplace_back(p.name, std::make_shared<QuantedConvBN2D>(
                                              conv, folded, p.quant.weight.make(conv->out_channels()),
                                              p.quant.activation.make(), config.settings().freeze_bn_after_steps));
        replacements.emplace_back(p.folded_bn, folded);
      } else {
        std::shared_ptr<QuantedLayer> w = config.mapping(p.quant_type)(layer, p.quant);
        QSLIM_CHECK(w != nullptr, "the QAT mapping of ", p.quant_type, " returned null");
        replacements.emplace_back(p.name, w);
      }
    } catch (const Error& e) {
      QSLIM_FAIL("quant_aware: layer '", p.name, "' (", p.quant_type, "): ", e.what());
    }
  }
  for (auto& [name, m] : replacements) model.replace_submodule(name, m);
}

void convert(nn::Module& model) {
  struct Replacement {
    nn::Module* parent;
    std::string leaf;
    nn::ModulePtr module;
  };
  std::vector<Replacement> replacements;
  size_t converted_before = 0;
  std::unordered_set<const nn::Module*> handled_bn;
  auto visit = [&](nn::Module& parent, const std::string& prefix, auto&& self) -> void {
    const auto children = parent.named_children();
    for (const auto& [leaf, child] : children) {
      const std::string name = dotted(prefix, leaf);
      if (dynamic_cast<const ConvertedLayer*>(child.get())) ++converted_before;
      auto* q = dynamic_cast<QuantedLayer*>(child.get());
      if (!q) {
        self(*child, name, self);
        continue;
      }
      std::shared_ptr<ConvertedLayer> c;
      try {
        c = q->convert();
      } catch (const Error& e) {
        QSLIM_FAIL("convert: layer '", name, "' (", q->type_name(), "): ", e.what());
      }
      if (auto* cbn = dynamic_cast<QuantedConvBN2D*>(q)) {
        auto it =
            std::find_if(children.begin(), children.end(), [&](const auto& e) { return e.second == cbn->folded_bn(); });
        QSLIM_CHECK(it != children.end(), "convert: the FoldedBatchNorm2D of '", name,
                    "' is no longer its sibling; cannot replace it");
        auto* wl = dynamic_cast<ConvertedWeightLayer*>(c.get());
        QSLIM_CHECK(wl != nullptr, "convert: '", name, "' did not convert to a weight layer");
        wl->set_folded_bn(it->first);
        handled_bn.insert(it->second.get());
        replacements.push_back({&parent, it->first, std::make_shared<nn::Identity>()});
      }
      replacements.push_back({&parent, leaf, c});
    }
  };
  visit(model, "", visit);
  for (const auto& [name, m] : all_modules(model))
    QSLIM_CHECK(!dynamic_cast<const FoldedBatchNorm2D*>(m) || handled_bn.count(m), "convert: '", name,
                "' is a FoldedBatchNorm2D without its QuantedConvBN2D");
  QSLIM_CHECK(!replacements.empty(), "convert: the model has no QAT layers",
              converted_before ? " (it is already converted)" : "; call quant::quant_aware first");
  for (auto& r : replacements) r.parent->replace_submodule(r.leaf, r.module);
}

}  // namespace qslim::quant
