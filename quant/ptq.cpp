#include "quant/ptq.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "quant/quant_layers.h"
#include "quant/quanter_factory.h"

namespace qslim::quant {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void check_weight_type(const std::string& type) {
  const auto& allowed = ptq_weight_types();
  QSLIM_CHECK(std::find(allowed.begin(), allowed.end(), type) != allowed.end(), "PTQ: unknown weight_quantize_type '",
              type, "'; allowed: ", join(allowed));
}

std::string checked_observer_type(const std::string& algo) {
  try {
    return observer_type_for_algo(algo);
  } catch (const Error& e) {
    QSLIM_FAIL("PTQ: unknown algo '", algo, "': ", e.what());
  }
}

}  // namespace

const std::vector<std::string>& ptq_weight_types() {
  static const std::vector<std::string> types = {"channel_wise_abs_max", "abs_max", "mse"};
  return types;
}

QuantConfig ptq_config(const PtqOptions& options) {
  checked_observer_type(options.algo);
  check_weight_type(options.weight_quantize_type);
  QuantSettings s;
  s.weight_quantize_type = options.weight_quantize_type == "abs_max" ? "abs_max" : "channel_wise_abs_max";
  // The activation quanters are replaced by observers in PTQ::quantize; abs_max is the QAT type whose
  // frozen form (one per-tensor threshold) matches what an observer yields.
  s.activation_quantize_type = "abs_max";
  s.weight_bits = options.weight_bits;
  s.activation_bits = options.activation_bits;
  s.not_quant_pattern = options.not_quant_pattern;
  s.quantize_op_types = options.quantizable_op_type;
  s.dtype = options.dtype;
  s.is_full_quantize = options.is_full_quantize;
  s.rounding = options.rounding;
  s.fold_bn = options.fold_bn;
  try {
    return QuantConfig(s);
  } catch (const Error& e) {
    QSLIM_FAIL("PTQ: ", e.what());
  }
}

PTQ::PTQ(const PtqOptions& options) : PTQ(ptq_config(options), options) {}

PTQ::PTQ(QuantConfig config, const PtqOptions& options)
    : config_(std::move(config)), options_(options), act_observer_(checked_observer_type(options.algo)) {
  check_weight_type(options.weight_quantize_type);
}

std::vector<PlannedLayer> PTQ::quantize(nn::Module& model) {
  std::vector<PlannedLayer> plan = plan_quant_aware(model, config_);
  QSLIM_CHECK(!plan.empty(), "PTQ: nothing to quantize in this ", model.type_name(),
              ": no layer of the quantize op types (", join(config_.effective_op_types()),
              ") outside the skipped scopes (not_quant_pattern: ", join(config_.settings().not_quant_pattern), ")");
  quant_aware(model, config_);
  for (const PlannedLayer& p : plan) {
    auto* layer = dynamic_cast<QuantedLayer*>(model.get_submodule(p.name).get());
    QSLIM_CHECK(layer != nullptr, "PTQ: '", p.name, "' was not wrapped by quant_aware");
    const auto children = layer->named_children();  // a copy: replace_submodule edits the list
    for (const auto& [leaf, child] : children) {
      const auto* q = dynamic_cast<const Quanter*>(child.get());
      if (!q || dynamic_cast<const Observer*>(q)) continue;
      QuanterOptions o;
      static_cast<QuantOptions&>(o) = q->options();
      o.observer = options_.observer;
      QuanterPtr observer;
      if (q->role() == QuantRole::Activation) {
        observer = make_quanter(act_observer_, o);
      } else if (options_.weight_quantize_type == "mse") {
        auto* w = dynamic_cast<const QuantedWeightLayer*>(layer);
        QSLIM_CHECK(w != nullptr, "PTQ: '", p.name, "' has a weight quanter but no weight");
        o.axis = 0;
        o.channels = w->weight().size(0);
        observer = make_quanter("MSEChannelWiseWeightObserver", o);
      }
      if (!observer) continue;
      try {
        layer->replace_submodule(leaf, observer);
      } catch (const Error& e) {
        QSLIM_FAIL("PTQ: layer '", p.name, "': ", e.what());
      }
    }
  }
  model.eval();
  return plan;
}

Tensor PTQ::calibrate(nn::Module& model, const Tensor& batch) const {
  if (model.is_training()) model.eval();
  NoGradGuard no_grad;
  return model(batch);
}

void PTQ::finalize(nn::Module& model) const {
  const auto observers = observers_of(model);
  QSLIM_CHECK(!observers.empty(), "PTQ::finalize: the ", model.type_name(),
              " holds no observer; call PTQ::quantize and calibrate first");
  std::vector<std::string> unseen;
  for (const auto& [name, o] : observers)
    if (o->role() == QuantRole::Activation && !o->finalized() && o->batches_seen() == 0) unseen.push_back(name);
  QSLIM_CHECK(unseen.empty(), "PTQ: ", unseen.size(), " observer(s) saw no calibration batch: ", join(unseen),
              " (the forward never reached these layers; skip them or calibrate with data that does)");
  for (const auto& [name, o] : observers) {
    try {
      o->finalize();
    } catch (const Error& e) {
      QSLIM_FAIL("PTQ: finalizing observer '", name, "': ", e.what());
    }
  }
}

void PTQ::convert(nn::Module& model) const {
  finalize(model);
  quant::convert(model);
}

std::vector<std::pair<std::string, Observer*>> observers_of(nn::Module& model) {
  std::vector<std::pair<std::string, Observer*>> out;
  for (const auto& [name, m] : model.named_modules())
    if (auto* o = dynamic_cast<Observer*>(m.get())) out.emplace_back(name, o);
  return out;
}

}  // namespace qslim::quant
