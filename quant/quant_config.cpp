#include "quant/quant_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nn/conv2d.h"
#include "quant/observer.h"
#include "quant/quant_layers.h"

namespace qslim::quant {

namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

const std::vector<std::pair<std::string, std::vector<std::string>>>& paddle_aliases() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> aliases = {
      {"conv2d", {"Conv2D"}},
      {"depthwise_conv2d", {"DepthwiseConv2D"}},
      {"mul", {"Linear"}},
      {"matmul", {"Linear"}},
      {"matmul_v2", {"Linear"}},
      {"elementwise_add", {"Add"}},
      {"concat", {"Concat"}},
      {"pool2d", {"MaxPool2D", "AvgPool2D", "AdaptiveAvgPool2D"}},
      {"relu", {"ReLU"}},
      {"relu6", {"ReLU6"}},
      {"leaky_relu", {"LeakyReLU"}},
      {"sigmoid", {"Sigmoid"}},
      {"tanh", {"Tanh"}},
      {"hard_swish", {"Hardswish"}},
      {"hard_sigmoid", {"Hardsigmoid"}},
      {"swish", {"SiLU"}},
      {"gelu", {"GELU"}},
  };
  return aliases;
}

std::vector<std::string> activation_quanter_types() {
  std::vector<std::string> out;
  for (const std::string& t : quanter_types())
    if (t != "channel_wise_abs_max") out.push_back(t);
  return out;
}

// ---------------------------------------------------------------- JSON reading

struct Reader {
  const json& obj;
  std::string where;  // "quant config <source>" or "... type_config 'Linear'"

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    QSLIM_FAIL(where, ": key '", key, "' ", what);
  }
  void check_keys(const std::vector<std::string>& allowed) const {
    for (auto it = obj.begin(); it != obj.end(); ++it)
      QSLIM_CHECK(contains(allowed, it.key()), where, ": unknown key '", it.key(), "'; allowed keys: ", join(allowed));
  }
  bool has(const std::string& key) const { return obj.contains(key); }
  std::string str(const std::string& key, const std::vector<std::string>& allowed) const {
    const json& v = obj.at(key);
    if (!v.is_string()) fail(key, "must be a string, one of: " + join(allowed) + "; got " + v.dump());
    std::string s = v.get<std::string>();
    if (!contains(allowed, s)) fail(key, "has invalid value '" + s + "'; allowed: " + join(allowed));
    return s;
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const json& v = obj.at(key);
    const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
    if (!v.is_number_integer()) fail(key, "must be an integer in " + range + ", got " + v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(key, "must be in " + range + ", got " + std::to_string(x));
    return x;
  }
  double number(const std::string& key) const {
    const json& v = obj.at(key);
    if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
    return v.get<double>();
  }
  bool boolean(const std::string& key) const {
    const json& v = obj.at(key);
    if (!v.is_boolean()) fail(key, "must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::vector<std::string> strings(const std::string& key) const {
    const json& v = obj.at(key);
    if (v.is_string()) return {v.get<std::string>()};
    if (!v.is_array()) fail(key, "must be a list of strings, got " + v.dump());
    std::vector<std::string> out;
    for (const json& e : v) {
      if (!e.is_string()) fail(key, "must be a list of strings, got element " + e.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  Preprocess preprocess(const std::string& key) const {
    const json& v = obj.at(key);
    if (v.is_null()) return Preprocess::None;
    if (!v.is_string()) fail(key, "must be null or \"PACT\", got " + v.dump());
    try {
      return preprocess_from_name(v.get<std::string>());
    } catch (const Error&) {
      fail(key, "has invalid value " + v.dump() + "; allowed: null, \"PACT\"");
    }
  }
};

const std::vector<std::string>& rule_keys() {
  static const std::vector<std::string> keys = {"weight_quantize_type",   "weight_bits",
                                                "weight_preprocess_type", "activation_quantize_type",
                                                "activation_bits",        "activation_preprocess_type",
                                                "activation_grid"};
  return keys;
}

const std::vector<std::string>& top_keys() {
  static const std::vector<std::string> keys = {"weight_quantize_type",
                                                "activation_quantize_type",
                                                "weight_bits",
                                                "activation_bits",
                                                "not_quant_pattern",
                                                "quantize_op_types",
                                                "dtype",
                                                "window_size",
                                                "moving_rate",
                                                "for_tensorrt",
                                                "is_full_quantize",
                                                "weight_preprocess_type",
                                                "activation_preprocess_type",
                                                "pact_alpha",
                                                "rounding",
                                                "ste",
                                                "activation_grid",
                                                "lsq_per_channel",
                                                "fold_bn",
                                                "freeze_bn_after_steps",
                                                "type_config",
                                                "name_config"};
  return keys;
}

// The settings that a rule object overrides, applied on top of the global ones.
QuantRule read_rule(const Reader& r, const QuantSettings& global) {
  r.check_keys(rule_keys());
  QuantSettings s = global;
  bool w = false, a = false;
  if (r.has("weight_quantize_type")) s.weight_quantize_type = r.str("weight_quantize_type", quanter_types()), w = true;
  if (r.has("weight_bits")) s.weight_bits = static_cast<int>(r.integer("weight_bits", kMinBits, kMaxBits)), w = true;
  if (r.has("weight_preprocess_type")) s.weight_preprocess_type = r.preprocess("weight_preprocess_type"), w = true;
  if (r.has("activation_quantize_type"))
    s.activation_quantize_type = r.str("activation_quantize_type", activation_quanter_types()), a = true;
  if (r.has("activation_bits"))
    s.activation_bits = static_cast<int>(r.integer("activation_bits", kMinBits, kMaxBits)), a = true;
  if (r.has("activation_preprocess_type"))
    s.activation_preprocess_type = r.preprocess("activation_preprocess_type"), a = true;
  if (r.has("activation_grid"))
    s.activation_grid = grid_kind_from_name(r.str("activation_grid", {"signed", "unsigned"})), a = true;
  QuantConfig c(s);  // validates the combination
  QuantRule rule;
  if (w) rule.weight = c.default_weight();
  if (a) rule.activation = c.default_activation();
  return rule;
}

void write_rule(json& out, const QuantRule& rule) {
  if (rule.weight) {
    out["weight_quantize_type"] = rule.weight->type;
    out["weight_bits"] = rule.weight->options.bits;
    out["weight_preprocess_type"] = rule.weight->options.preprocess == Preprocess::Pact ? json("PACT") : json(nullptr);
  }
  if (rule.activation) {
    out["activation_quantize_type"] = rule.activation->type;
    out["activation_bits"] = rule.activation->options.bits;
    out["activation_preprocess_type"] =
        rule.activation->options.preprocess == Preprocess::Pact ? json("PACT") : json(nullptr);
    out["activation_grid"] = grid_kind_name(rule.activation->options.resolved_grid_kind());
  }
}

GridKind effective_activation_grid(const QuantSettings& s) {
  if (s.activation_grid) return *s.activation_grid;
  return s.dtype == "uint8" ? GridKind::Unsigned : GridKind::Signed;
}

void validate(QuantSettings& s) {
  QSLIM_CHECK(contains(quanter_types(), s.weight_quantize_type), "weight_quantize_type '", s.weight_quantize_type,
              "' is unknown; allowed: ", join(quanter_types()));
  QSLIM_CHECK(contains(activation_quanter_types(), s.activation_quantize_type), "activation_quantize_type '",
              s.activation_quantize_type, "' is not allowed; allowed: ", join(activation_quanter_types()));
  QSLIM_CHECK(s.weight_bits >= kMinBits && s.weight_bits <= kMaxBits, "weight_bits must be in 2..16, got ",
              s.weight_bits);
  QSLIM_CHECK(s.activation_bits >= kMinBits && s.activation_bits <= kMaxBits, "activation_bits must be in 2..16, got ",
              s.activation_bits);
  QSLIM_CHECK(s.dtype == "int8" || s.dtype == "uint8", "dtype '", s.dtype, "' is not allowed; allowed: int8, uint8");
  if (s.activation_grid) {
    QSLIM_CHECK(*s.activation_grid != GridKind::Narrow,
                "activation_grid 'narrow' is not allowed; allowed: signed, unsigned");
    QSLIM_CHECK(!(s.dtype == "uint8" && *s.activation_grid == GridKind::Signed),
                "activation_grid 'signed' contradicts dtype 'uint8'; allowed with uint8: unsigned");
  }
  QSLIM_CHECK(s.window_size >= 1, "window_size must be >= 1, got ", s.window_size);
  QSLIM_CHECK(s.moving_rate >= 0 && s.moving_rate < 1, "moving_rate must be in [0, 1), got ", s.moving_rate);
  QSLIM_CHECK(std::isfinite(s.pact_alpha) && s.pact_alpha > 0, "pact_alpha must be a positive number, got ",
              s.pact_alpha);
  for (const std::string& p : s.not_quant_pattern)
    QSLIM_CHECK(!p.empty(), "not_quant_pattern entries must be non-empty strings");
  if (s.for_tensorrt) {
    QSLIM_CHECK(s.weight_quantize_type == "channel_wise_abs_max",
                "for_tensorrt requires weight_quantize_type 'channel_wise_abs_max' (TensorRT's INT8 weights are "
                "per channel), got '",
                s.weight_quantize_type, "'; allowed with for_tensorrt: channel_wise_abs_max");
    QSLIM_CHECK(s.weight_bits == 8 && s.activation_bits == 8,
                "for_tensorrt requires weight_bits = activation_bits = 8, got ", s.weight_bits, " and ",
                s.activation_bits);
  }
  QSLIM_CHECK(!s.lsq_per_channel || s.weight_quantize_type == "lsq_plus",
              "lsq_per_channel requires weight_quantize_type 'lsq_plus', got '", s.weight_quantize_type, "'");
  QSLIM_CHECK(s.freeze_bn_after_steps >= -1, "freeze_bn_after_steps must be -1 (never) or >= 0, got ",
              s.freeze_bn_after_steps);
  QSLIM_CHECK(s.freeze_bn_after_steps == -1 || s.fold_bn, "freeze_bn_after_steps (", s.freeze_bn_after_steps,
              ") requires fold_bn = true");
  std::vector<std::string> canonical;
  for (const std::string& t : s.quantize_op_types)
    for (const std::string& c : canonical_quant_types(t))
      if (!contains(canonical, c)) canonical.push_back(c);
  s.quantize_op_types = canonical;
}

QuanterFactory factory_from(const QuantSettings& s, QuantRole role) {
  const bool weight = role == QuantRole::Weight;
  QuanterFactory f;
  f.type = weight ? s.weight_quantize_type : s.activation_quantize_type;
  QuanterOptions& o = f.options;
  o.role = role;
  o.bits = weight ? s.weight_bits : s.activation_bits;
  if (!weight) o.grid = effective_activation_grid(s);
  o.rounding = s.rounding;
  o.ste = f.type == "lsq_plus" ? SteMode::Clipped : s.ste;
  o.window_size = s.window_size;
  o.moving_rate = s.moving_rate;
  o.lsq_per_channel = weight && s.lsq_per_channel;
  o.preprocess = weight ? s.weight_preprocess_type : s.activation_preprocess_type;
  o.pact.alpha = s.pact_alpha;
  o.pact.two_sided = weight || o.resolved_grid_kind() != GridKind::Unsigned;
  return f;
}

}  // namespace

// ---------------------------------------------------------------- types

const std::vector<std::string>& quantizable_types() {
  static const std::vector<std::string> types = {
      "Conv2D",    "DepthwiseConv2D",   "Linear",      "Add",   "Concat",    "MaxPool2D",
      "AvgPool2D", "AdaptiveAvgPool2D", "ReLU",        "ReLU6", "LeakyReLU", "Sigmoid",
      "Tanh",      "Hardswish",         "Hardsigmoid", "SiLU",  "GELU"};
  return types;
}

const std::vector<std::string>& tensorrt_types() {
  static const std::vector<std::string> types = {"Conv2D",    "DepthwiseConv2D",   "Linear",   "Add", "MaxPool2D",
                                                 "AvgPool2D", "AdaptiveAvgPool2D", "LeakyReLU"};
  return types;
}

std::vector<std::string> canonical_quant_types(const std::string& name) {
  if (contains(quantizable_types(), name)) return {name};
  for (const auto& [alias, types] : paddle_aliases())
    if (alias == name) return types;
  std::vector<std::string> allowed = quantizable_types();
  for (const auto& [alias, types] : paddle_aliases()) allowed.push_back(alias);
  QSLIM_FAIL("unknown quantize op type '", name, "'; allowed: ", join(allowed));
}

// ---------------------------------------------------------------- QuanterFactory

QuanterPtr QuanterFactory::make(int64_t channels) const {
  QuanterOptions o = options;
  if (o.role == QuantRole::Weight) {
    o.axis = 0;
    o.channels = channels;
  }
  return make_quanter(type, o);
}

std::string QuanterFactory::describe() const {
  std::ostringstream os;
  os << type << "(" << quant_role_name(options.role) << ", bits=" << options.bits
     << ", grid=" << grid_kind_name(options.resolved_grid_kind()) << ", rounding=" << rounding_name(options.rounding);
  if (type != "lsq_plus") os << ", ste=" << ste_mode_name(options.ste);
  if (type == "range_abs_max") os << ", window_size=" << options.window_size;
  if (type == "moving_average_abs_max") os << ", moving_rate=" << options.moving_rate;
  if (type == "lsq_plus" && options.lsq_per_channel) os << ", per_channel";
  if (options.preprocess == Preprocess::Pact) os << ", PACT(alpha=" << options.pact.alpha << ")";
  os << ")";
  return os.str();
}

QuanterFactory QuanterFactory::of(const std::string& type, QuantRole role, int bits) {
  QSLIM_CHECK(contains(quanter_types(), type) || contains(observer_types(), type), "QuanterFactory: unknown quanter type '",
              type, "'; allowed: ", join(quanter_types()), ", ", join(observer_types()));
  check_bits(bits, "QuanterFactory " + type);
  QuanterFactory f;
  f.type = type;
  f.options.role = role;
  f.options.bits = bits;
  return f;
}

// ---------------------------------------------------------------- QuantConfig

QuantConfig::QuantConfig() : QuantConfig(QuantSettings{}) {}

QuantConfig::QuantConfig(const QuantSettings& settings) : settings_(settings) {
  try {
    validate(settings_);
  } catch (const Error& e) {
    QSLIM_FAIL("QuantConfig: ", e.what());
  }
}

QuantConfig QuantConfig::from_json(const std::string& text, const std::string& source) {
  const std::string where = "quant config " + source;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    QSLIM_FAIL(where, ": not valid JSON: ", e.what());
  }
  QSLIM_CHECK(j.is_object(), where, ": expected a JSON object of config keys, got ", j.type_name());
  Reader r{j, where};
  r.check_keys(top_keys());
  QuantSettings s;
  if (r.has("weight_quantize_type")) s.weight_quantize_type = r.str("weight_quantize_type", quanter_types());
  if (r.has("activation_quantize_type"))
    s.activation_quantize_type = r.str("activation_quantize_type", activation_quanter_types());
  if (r.has("weight_bits")) s.weight_bits = static_cast<int>(r.integer("weight_bits", kMinBits, kMaxBits));
  if (r.has("activation_bits")) s.activation_bits = static_cast<int>(r.integer("activation_bits", kMinBits, kMaxBits));
  if (r.has("not_quant_pattern")) s.not_quant_pattern = r.strings("not_quant_pattern");
  if (r.has("quantize_op_types")) {
    s.quantize_op_types = r.strings("quantize_op_types");
    for (const std::string& t : s.quantize_op_types) {
      try {
        canonical_quant_types(t);
      } catch (const Error& e) {
        r.fail("quantize_op_types", std::string("has an invalid entry: ") + e.what());
      }
    }
  }
  if (r.has("dtype")) s.dtype = r.str("dtype", {"int8", "uint8"});
  if (r.has("window_size")) s.window_size = r.integer("window_size", 1, int64_t{1} << 40);
  if (r.has("moving_rate")) s.moving_rate = r.number("moving_rate");
  if (r.has("for_tensorrt")) s.for_tensorrt = r.boolean("for_tensorrt");
  if (r.has("is_full_quantize")) s.is_full_quantize = r.boolean("is_full_quantize");
  if (r.has("weight_preprocess_type")) s.weight_preprocess_type = r.preprocess("weight_preprocess_type");
  if (r.has("activation_preprocess_type")) s.activation_preprocess_type = r.preprocess("activation_preprocess_type");
  if (r.has("pact_alpha")) s.pact_alpha = r.number("pact_alpha");
  if (r.has("rounding")) s.rounding = rounding_from_name(r.str("rounding", {"half_even", "half_away"}));
  if (r.has("ste")) s.ste = ste_mode_from_name(r.str("ste", {"clipped", "identity"}));
  if (r.has("activation_grid"))
    s.activation_grid = grid_kind_from_name(r.str("activation_grid", {"signed", "unsigned"}));
  if (r.has("lsq_per_channel")) s.lsq_per_channel = r.boolean("lsq_per_channel");
  if (r.has("fold_bn")) s.fold_bn = r.boolean("fold_bn");
  if (r.has("freeze_bn_after_steps"))
    s.freeze_bn_after_steps = r.integer("freeze_bn_after_steps", -1, std::numeric_limits<int64_t>::max());

  QuantConfig config = [&] {
    try {
      return QuantConfig(s);
    } catch (const Error& e) {
      QSLIM_FAIL(where, ": ", e.what());
    }
  }();
  for (const char* section : {"type_config", "name_config"}) {
    if (!r.has(section)) continue;
    const json& rules = j.at(section);
    QSLIM_CHECK(rules.is_object(), where, ": '", section, "' must be an object mapping ",
                std::string(section) == "type_config" ? "a layer type" : "a dotted layer name", " to a rule, got ",
                rules.dump());
    for (auto it = rules.begin(); it != rules.end(); ++it) {
      const std::string rule_where = where + ": " + section + " '" + it.key() + "'";
      QSLIM_CHECK(it.value().is_object(), rule_where, ": must be an object with keys ", join(rule_keys()), ", got ",
                  it.value().dump());
      QuantRule rule;
      try {
        rule = read_rule(Reader{it.value(), rule_where}, config.settings());
      } catch (const Error& e) {
        const std::string msg = e.what();
        if (msg.rfind(rule_where, 0) == 0) throw;
        QSLIM_FAIL(rule_where, ": ", msg);
      }
      try {
        if (std::string(section) == "type_config")
          config.add_type_config(it.key(), rule);
        else
          config.add_name_config(it.key(), rule);
      } catch (const Error& e) {
        QSLIM_FAIL(rule_where, ": ", e.what());
      }
    }
  }
  return config;
}

QuantConfig QuantConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  QSLIM_CHECK(in.good(), "quant config ", path, ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  QSLIM_CHECK(!in.bad(), "quant config ", path, ": read error");
  return from_json(ss.str(), path);
}

std::string QuantConfig::to_json() const {
  const QuantSettings& s = settings_;
  json j;
  j["weight_quantize_type"] = s.weight_quantize_type;
  j["activation_quantize_type"] = s.activation_quantize_type;
  j["weight_bits"] = s.weight_bits;
  j["activation_bits"] = s.activation_bits;
  j["not_quant_pattern"] = s.not_quant_pattern;
  j["quantize_op_types"] = s.quantize_op_types;
  j["dtype"] = s.dtype;
  j["window_size"] = s.window_size;
  j["moving_rate"] = s.moving_rate;
  j["for_tensorrt"] = s.for_tensorrt;
  j["is_full_quantize"] = s.is_full_quantize;
  j["weight_preprocess_type"] = s.weight_preprocess_type == Preprocess::Pact ? json("PACT") : json(nullptr);
  j["activation_preprocess_type"] = s.activation_preprocess_type == Preprocess::Pact ? json("PACT") : json(nullptr);
  j["pact_alpha"] = s.pact_alpha;
  j["rounding"] = rounding_name(s.rounding);
  j["ste"] = ste_mode_name(s.ste);
  j["activation_grid"] = grid_kind_name(effective_activation_grid(s));
  j["lsq_per_channel"] = s.lsq_per_channel;
  j["fold_bn"] = s.fold_bn;
  j["freeze_bn_after_steps"] = s.freeze_bn_after_steps;
  for (const auto& [section, rules] :
       {std::pair{"type_config", &type_rules_}, std::pair{"name_config", &name_rules_}}) {
    if (rules->empty()) continue;
    json obj = json::object();
    for (const auto& [key, rule] : *rules) {
      json r = obj.contains(key) ? obj[key] : json::object();  // a later rule for the same key overrides fields
      write_rule(r, rule);
      obj[key] = r;
    }
    j[section] = obj;
  }
  return j.dump(2);
}

QuanterFactory QuantConfig::default_weight() const {
  return default_weight_ ? *default_weight_ : factory_from(settings_, QuantRole::Weight);
}

QuanterFactory QuantConfig::default_activation() const {
  return default_activation_ ? *default_activation_ : factory_from(settings_, QuantRole::Activation);
}

namespace {
void check_factory(const QuanterFactory& f, QuantRole role, const std::string& who) {
  QSLIM_CHECK(f.options.role == role, who, ": quanter factory ", f.describe(), " has role ",
              quant_role_name(f.options.role), ", expected ", quant_role_name(role));
  QSLIM_CHECK(contains(quanter_types(), f.type) || contains(observer_types(), f.type), who, ": unknown quanter type '",
              f.type, "'; allowed: ", join(quanter_types()), ", ", join(observer_types()));
  QSLIM_CHECK(role == QuantRole::Weight || f.type.find("ChannelWise") == std::string::npos, who, ": ", f.type,
              " is for weights");
  QSLIM_CHECK(role == QuantRole::Weight || f.type != "channel_wise_abs_max", who,
              ": channel_wise_abs_max is for weights; allowed for activations: ", join(activation_quanter_types()));
  check_bits(f.options.bits, who);
}
void check_rule(const QuantRule& r, const QuantSettings& s, const std::string& who) {
  QSLIM_CHECK(r.weight || r.activation, who, ": the rule sets neither a weight nor an activation quanter");
  if (r.weight) check_factory(*r.weight, QuantRole::Weight, who);
  if (r.activation) check_factory(*r.activation, QuantRole::Activation, who);
  if (!s.for_tensorrt) return;
  QSLIM_CHECK(!r.weight || (r.weight->type == "channel_wise_abs_max" && r.weight->options.bits == 8), who,
              ": for_tensorrt requires 8-bit channel_wise_abs_max weights, got ", r.weight->describe());
  QSLIM_CHECK(!r.activation || r.activation->options.bits == 8, who, ": for_tensorrt requires 8-bit activations, got ",
              r.activation ? r.activation->describe() : "");
}
}  // namespace

void QuantConfig::set_default_weight(const QuanterFactory& f) {
  check_factory(f, QuantRole::Weight, "QuantConfig::set_default_weight");
  default_weight_ = f;
}

void QuantConfig::set_default_activation(const QuanterFactory& f) {
  check_factory(f, QuantRole::Activation, "QuantConfig::set_default_activation");
  default_activation_ = f;
}

void QuantConfig::add_type_config(const std::string& type_name, const QuantRule& rule) {
  check_rule(rule, settings_, "QuantConfig::add_type_config('" + type_name + "')");
  std::vector<std::string> types;
  try {
    types = canonical_quant_types(type_name);
  } catch (const Error&) {
    types = {type_name};  // a custom type; plan_quant_aware checks that it has a mapping
  }
  for (const std::string& t : types) type_rules_.emplace_back(t, rule);
}

void QuantConfig::add_name_config(const std::string& dotted_name, const QuantRule& rule) {
  check_rule(rule, settings_, "QuantConfig::add_name_config('" + dotted_name + "')");
  QSLIM_CHECK(!dotted_name.empty(), "QuantConfig::add_name_config: empty layer name");
  name_rules_.emplace_back(dotted_name, rule);
}

void QuantConfig::add_layer_config(const nn::Module* layer, const QuantRule& rule) {
  QSLIM_CHECK(layer != nullptr, "QuantConfig::add_layer_config: null layer");
  check_rule(rule, settings_, "QuantConfig::add_layer_config(" + layer->type_name() + ")");
  layer_rules_.emplace_back(layer, rule);
}

void QuantConfig::skip(const nn::Module* layer) {
  QSLIM_CHECK(layer != nullptr, "QuantConfig::skip: null layer");
  skipped_.push_back(layer);
}

void QuantConfig::add_qat_layer_mapping(const std::string& source_type, QatLayerFactory factory) {
  QSLIM_CHECK(!source_type.empty(), "QuantConfig::add_qat_layer_mapping: empty source type");
  QSLIM_CHECK(factory != nullptr, "QuantConfig::add_qat_layer_mapping('", source_type, "'): null factory");
  for (auto& [t, f] : mappings_)
    if (t == source_type) {
      f = std::move(factory);
      return;
    }
  mappings_.emplace_back(source_type, std::move(factory));
}

std::string QuantConfig::quant_type_of(const nn::Module& m) {
  if (const auto* conv = dynamic_cast<const nn::Conv2D*>(&m))
    if (conv->groups() > 1 && conv->groups() == conv->in_channels()) return "DepthwiseConv2D";
  return m.type_name();
}

bool QuantConfig::has_mapping(const std::string& quant_type) const {
  for (const auto& [t, f] : mappings_)
    if (t == quant_type) return true;
  return builtin_qat_mapping(quant_type) != nullptr;
}

bool QuantConfig::has_custom_mapping(const std::string& quant_type) const {
  for (const auto& [t, f] : mappings_)
    if (t == quant_type) return true;
  return false;
}

QatLayerFactory QuantConfig::mapping(const std::string& quant_type) const {
  for (const auto& [t, f] : mappings_)
    if (t == quant_type) return f;
  QatLayerFactory builtin = builtin_qat_mapping(quant_type);
  QSLIM_CHECK(builtin != nullptr, "QuantConfig: no QAT mapping for type '", quant_type,
              "'; mapped types: ", join(effective_op_types()));
  return builtin;
}

std::vector<std::string> QuantConfig::effective_op_types() const {
  std::vector<std::string> out = settings_.quantize_op_types;
  auto add = [&](const std::string& t) {
    if (!contains(out, t)) out.push_back(t);
  };
  if (settings_.is_full_quantize) {
    for (const std::string& t : quantizable_types()) add(t);
    for (const auto& [t, f] : mappings_) add(t);
  }
  if (settings_.for_tensorrt)
    for (const std::string& t : tensorrt_types()) add(t);
  return out;
}

bool QuantConfig::quantizes_type(const std::string& quant_type) const {
  return contains(effective_op_types(), quant_type);
}

bool QuantConfig::skipped_by_pattern(const std::string& dotted_name) const {
  for (const std::string& p : settings_.not_quant_pattern)
    if (dotted_name.find(p) != std::string::npos) return true;
  return false;
}

bool QuantConfig::skipped_layer(const nn::Module* m) const {
  return std::find(skipped_.begin(), skipped_.end(), m) != skipped_.end();
}

ResolvedQuant QuantConfig::resolve(const nn::Module* layer, const std::string& dotted_name,
                                   const std::string& quant_type, bool* matched) const {
  ResolvedQuant r{default_weight(), default_activation(), "default"};
  bool any = false;
  auto apply = [&](const QuantRule& rule, const std::string& source) {
    if (rule.weight) r.weight = *rule.weight;
    if (rule.activation) r.activation = *rule.activation;
    r.source = source;
    any = true;
  };
  for (const auto& [t, rule] : type_rules_)
    if (t == quant_type) apply(rule, "type " + t);
  for (const auto& [n, rule] : name_rules_)
    if (n == dotted_name) apply(rule, "name " + n);
  for (const auto& [l, rule] : layer_rules_)
    if (l == layer) apply(rule, "layer");
  if (matched) *matched = any;
  return r;
}

}  // namespace qslim::quant
