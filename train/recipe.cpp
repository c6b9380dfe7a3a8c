#include "train/recipe.h"

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace qslim::train {

namespace {
using json = nlohmann::json;

enum class Kind { Int, UInt, Number, Bool, String, Numbers };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Int: return "an integer";
    case Kind::UInt: return "a non-negative integer";
    case Kind::Number: return "a number";
    case Kind::Bool: return "true or false";
    case Kind::String: return "a string";
    case Kind::Numbers: return "a non-empty array of numbers";
  }
  return "?";
}

bool has_kind(const json& j, Kind k) {
  switch (k) {
    case Kind::Int: return j.is_number_integer();
    case Kind::UInt: return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0);
    case Kind::Number: return j.is_number();
    case Kind::Bool: return j.is_boolean();
    case Kind::String: return j.is_string();
    case Kind::Numbers:
      if (!j.is_array() || j.empty()) return false;
      for (const json& v : j)
        if (!v.is_number()) return false;
      return true;
  }
  return false;
}

struct Field {
  const char* key;
  Kind kind;
  std::function<void(TrainConfig&, const json&)> set;  // the value has been checked against `kind`
  std::function<json(const TrainConfig&)> get;
};

std::vector<float> floats(const json& j) {
  std::vector<float> v;
  for (const json& x : j) v.push_back(x.get<float>());
  return v;
}

#define QSLIM_FIELD(name, kind, type) \
  Field { #name, kind, [](TrainConfig& c, const json& j) { c.name = j.get<type>(); }, [](const TrainConfig& c) { return json(c.name); } }

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      QSLIM_FIELD(model, Kind::String, std::string),
      QSLIM_FIELD(dataset, Kind::String, std::string),
      QSLIM_FIELD(epochs, Kind::Int, int),
      QSLIM_FIELD(epoch_fraction, Kind::Number, double),
      QSLIM_FIELD(batch_size, Kind::Int, int64_t),
      QSLIM_FIELD(optimizer, Kind::String, std::string),
      QSLIM_FIELD(lr, Kind::Number, double),
      QSLIM_FIELD(momentum, Kind::Number, double),
      QSLIM_FIELD(nesterov, Kind::Bool, bool),
      QSLIM_FIELD(weight_decay, Kind::Number, double),
      QSLIM_FIELD(schedule, Kind::String, std::string),
      QSLIM_FIELD(warmup_epochs, Kind::Number, double),
      QSLIM_FIELD(step_size_epochs, Kind::Int, int64_t),
      QSLIM_FIELD(gamma, Kind::Number, double),
      QSLIM_FIELD(label_smoothing, Kind::Number, double),
      QSLIM_FIELD(augment, Kind::Bool, bool),
      QSLIM_FIELD(crop_padding, Kind::Int, int64_t),
      QSLIM_FIELD(flip, Kind::Bool, bool),
      QSLIM_FIELD(seed, Kind::UInt, uint64_t),
      Field{"mean", Kind::Numbers, [](TrainConfig& c, const json& j) { c.mean = floats(j); },
            [](const TrainConfig& c) { return json(c.mean); }},
      Field{"std", Kind::Numbers, [](TrainConfig& c, const json& j) { c.std = floats(j); },
            [](const TrainConfig& c) { return json(c.std); }},
  };
  return table;
}
#undef QSLIM_FIELD

const Field* find_field(const std::string& key) {
  for (const Field& f : fields())
    if (key == f.key) return &f;
  return nullptr;
}

std::string allowed_list() {
  std::string s;
  for (const std::string& k : recipe_keys()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

[[noreturn]] void unknown_key(const std::string& source, const std::string& key) {
  QSLIM_FAIL(source, ": unknown key '", key, "' (allowed: ", allowed_list(), ")");
}

void validate_from(const TrainConfig& c, const std::string& source) {
  try {
    validate(c);
  } catch (const Error& e) {
    QSLIM_FAIL(source, ": ", e.what());
  }
}

// Text as typed on a command line -> JSON value of the field's kind, or "" with the reason.
json parse_text(const Field& f, const std::string& text, const std::string& source) {
  auto fail = [&]() -> json { QSLIM_FAIL(source, ": '", text, "' for ", f.key, " is not ", kind_name(f.kind)); };
  auto parse_double = [&](const std::string& s, double& out) {
    size_t pos = 0;
    try {
      out = std::stod(s, &pos);
    } catch (...) {
      return false;
    }
    return pos == s.size() && !s.empty();
  };
  switch (f.kind) {
    case Kind::Int:
    case Kind::UInt: {
      if (text.empty() || (f.kind == Kind::UInt && text[0] == '-')) return fail();
      size_t pos = 0;
      try {
        if (f.kind == Kind::UInt) {
          uint64_t v = std::stoull(text, &pos);
          if (pos == text.size()) return json(v);
        } else {
          int64_t v = std::stoll(text, &pos);
          if (pos == text.size()) return json(v);
        }
      } catch (...) {
      }
      return fail();
    }
    case Kind::Number: {
      double v;
      if (!parse_double(text, v)) return fail();
      return json(v);
    }
    case Kind::Bool:
      if (text == "true" || text == "1" || text == "yes" || text == "on") return json(true);
      if (text == "false" || text == "0" || text == "no" || text == "off") return json(false);
      return fail();
    case Kind::String: return json(text);
    case Kind::Numbers: {
      json a = json::array();
      std::stringstream ss(text);
      std::string item;
      while (std::getline(ss, item, ',')) {
        double v;
        if (!parse_double(item, v)) return fail();
        a.push_back(v);
      }
      if (a.empty()) return fail();
      return a;
    }
  }
  return fail();
}

void set_checked(const Field& f, const json& value, const std::string& source, TrainConfig& c) {
  QSLIM_CHECK(has_kind(value, f.kind), source, ": key '", f.key, "' must be ", kind_name(f.kind), ", got ",
              value.dump());
  if (f.kind == Kind::Int) {
    // Int fields narrower than int64 (epochs) must not wrap around.
    const int64_t v = value.get<int64_t>();
    QSLIM_CHECK(std::string(f.key) != "epochs" || (v >= INT32_MIN && v <= INT32_MAX), source, ": key '", f.key,
                "' value ", v, " is out of range");
  }
  f.set(c, value);
}
}  // namespace

const std::vector<std::string>& recipe_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const Field& f : fields()) k.push_back(f.key);
    k.push_back("notes");
    return k;
  }();
  return keys;
}

std::vector<std::string> apply_recipe_json(const std::string& text, const std::string& source, TrainConfig& config,
                                           std::string* notes) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    QSLIM_FAIL(source, ": not valid JSON: ", e.what());
  }
  QSLIM_CHECK(j.is_object(), source, ": a recipe must be a JSON object of settings, got ", j.type_name());
  TrainConfig c = config;
  std::vector<std::string> set;
  for (const auto& [key, value] : j.items()) {
    if (key == "notes") {
      QSLIM_CHECK(value.is_string(), source, ": key 'notes' must be a string, got ", value.dump());
      if (notes) *notes = value.get<std::string>();
      continue;
    }
    const Field* f = find_field(key);
    if (!f) unknown_key(source, key);
    set_checked(*f, value, source, c);
    set.push_back(key);
  }
  validate_from(c, source);
  config = c;
  return set;
}

std::vector<std::string> apply_recipe_file(const std::string& path, TrainConfig& config, std::string* notes) {
  std::ifstream in(path, std::ios::binary);
  QSLIM_CHECK(in.good(), "recipe ", path, ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  QSLIM_CHECK(!in.bad(), "recipe ", path, ": read error");
  return apply_recipe_json(ss.str(), path, config, notes);
}

void apply_setting(const std::string& key, const std::string& value, const std::string& source, TrainConfig& config) {
  const Field* f = find_field(key);
  if (!f) unknown_key(source, key);
  set_checked(*f, parse_text(*f, value, source), source, config);
}

std::string config_to_json(const TrainConfig& config) {
  json j = json::object();
  for (const Field& f : fields()) j[f.key] = f.get(config);
  return j.dump();
}

ResolvedConfig resolve_config(const TrainConfig& base, const std::string& recipe_path,
                              const std::vector<std::pair<std::string, std::string>>& overrides) {
  ResolvedConfig r;
  r.config = base;
  if (!recipe_path.empty())
    for (const std::string& k : apply_recipe_file(recipe_path, r.config, &r.notes)) r.set_keys.insert(k);
  for (const auto& [key, value] : overrides) {
    std::string flag = "--" + key;
    for (char& ch : flag) ch = ch == '_' ? '-' : ch;
    apply_setting(key, value, flag, r.config);
    r.set_keys.insert(key);
  }
  validate(r.config);
  return r;
}

}  // namespace qslim::train
