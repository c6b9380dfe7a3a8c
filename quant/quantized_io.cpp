#include "quant/quantized_io.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "core/factory.h"
#include "models/registry.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/embedding.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "quant/converted_layers.h"
#include "quant/dynamic_layers.h"
#include "quant/quant_embedding.h"
#include "quant/quant_layers.h"

namespace qslim::quant {

namespace {

using nlohmann::json;

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string parent_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

// The shortest decimal that reads back as the same float, as a double (so the JSON stays short
// and the value round-trips exactly).
double short_float(double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v));
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

// Per-tensor quantizations record s, z and T; per-channel weight steps live in the
// "<layer>.weight_scale" tensor (as PaddleSlim keeps channel-wise scales in tensors), so the record
// names it and gives the largest threshold. Weights are integers already: no rounding recorded.
json record_json(const std::string& layer, const std::string& tensor, const QuantParams& p) {
  json r;
  r["bits"] = p.grid.bits();
  r["grid"] = grid_kind_name(p.grid.kind());
  r["axis"] = p.axis;
  const bool weight = tensor == "weight";
  if (!weight) r["rounding"] = rounding_name(p.rounding);
  const std::vector<double> scales = p.scales();
  if (p.per_channel()) {
    double t_max = 0;
    for (double s : scales) t_max = std::max(t_max, scale_to_threshold(static_cast<float>(s), p.grid));
    r["scale_tensor"] = layer + "." + tensor + "_scale";
    r["T_max"] = short_float(t_max);
  } else {
    r["s"] = short_float(scales[0]);
    r["z"] = p.zero_points()[0];
    r["T"] = short_float(scale_to_threshold(static_cast<float>(scales[0]), p.grid));
  }
  return r;
}

// Collects the converted layers of a model (throwing if it still holds QAT wrappers).
std::vector<std::pair<std::string, const ConvertedLayer*>> converted_layers(const nn::Module& model) {
  std::vector<std::pair<std::string, const ConvertedLayer*>> out;
  auto visit = [&](const nn::Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [leaf, c] : m.named_children()) {
      const std::string name = dotted(prefix, leaf);
      QSLIM_CHECK(!dynamic_cast<const QuantedLayer*>(c.get()), "save_converted: the model is not converted ('", name,
                  "' is a ", c->type_name(), "); call quant::convert first");
      if (auto* cl = dynamic_cast<const ConvertedLayer*>(c.get())) {
        out.emplace_back(name, cl);
        continue;
      }
      self(*c, name, self);
    }
  };
  visit(model, "", visit);
  QSLIM_CHECK(!out.empty(), "save_converted: the model has no converted layers; call quant_aware, train, then convert");
  return out;
}

json layers_json(const nn::Module& model) {
  json layers = json::array();
  for (const auto& [name, layer] : converted_layers(model)) {
    json e;
    e["name"] = name;
    e["type"] = layer->type_name();
    e["source"] = layer->source_type();
    if (auto* w = dynamic_cast<const ConvertedWeightLayer*>(layer)) {
      e["has_bias"] = w->has_bias();
      if (!w->folded_bn().empty()) e["folded_bn"] = dotted(parent_of(name), w->folded_bn());
    }
    if (auto* op = dynamic_cast<const ConvertedOp*>(layer)) e["point"] = op_quant_point_name(op->point());
    if (auto* d = dynamic_cast<const DynamicWeightLayer*>(layer)) e["has_bias"] = d->has_bias();
    if (auto* emb = dynamic_cast<const QuantEmbedding*>(layer))
      if (emb->clip_threshold()) e["clip_threshold"] = *emb->clip_threshold();
    json quant = json::object();
    for (const auto& rec : layer->quant_records()) quant[rec.tensor] = record_json(name, rec.tensor, rec.params);
    e["quant"] = quant;
    layers.push_back(e);
  }
  return layers;
}

// ---------------------------------------------------------------- reading the metadata

struct MetaReader {
  std::string where;  // "load_converted: <path>: layer 'x'"

  const json& at(const json& obj, const std::string& key) const {
    QSLIM_CHECK(obj.is_object() && obj.contains(key), where, ": metadata has no '", key, "'");
    return obj.at(key);
  }
  std::string str(const json& obj, const std::string& key) const {
    const json& v = at(obj, key);
    QSLIM_CHECK(v.is_string(), where, ": metadata '", key, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
  int64_t integer(const json& obj, const std::string& key) const {
    const json& v = at(obj, key);
    QSLIM_CHECK(v.is_number_integer(), where, ": metadata '", key, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  bool boolean(const json& obj, const std::string& key) const {
    const json& v = at(obj, key);
    QSLIM_CHECK(v.is_boolean(), where, ": metadata '", key, "' must be true or false, got ", v.dump());
    return v.get<bool>();
  }
  QuantGrid grid(const json& rec) const {
    try {
      return QuantGrid(static_cast<int>(integer(rec, "bits")), grid_kind_from_name(str(rec, "grid")));
    } catch (const Error& e) {
      QSLIM_FAIL(where, ": ", e.what());
    }
  }
  ActQuantSpec act_spec(const json& rec) const {
    try {
      return {grid(rec), rounding_from_name(str(rec, "rounding"))};
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.rfind(where, 0) == 0) throw;
      QSLIM_FAIL(where, ": ", msg);
    }
  }
};

// The weight-only layers (dynamic quantization, embedding quantization) of one layer entry: an
// integer weight on the narrow grid, no activation quantization.
nn::ModulePtr rebuild_weight_only(const nn::ModulePtr& m, const std::string& type, const std::string& source,
                                  const json& e, const MetaReader& r) {
  const json& quant = r.at(e, "quant");
  QSLIM_CHECK(quant.is_object() && quant.size() == 1, r.where, ": a ", type,
              " quantizes only its weight, but the metadata records ", quant.dump());
  const json& w = r.at(quant, "weight");
  const QuantGrid grid = r.grid(w);
  const int64_t axis = r.integer(w, "axis");
  QSLIM_CHECK(grid.kind() == GridKind::Narrow, r.where, ": ", type, " weights use the narrow grid, got ",
              grid.to_string());
  try {
    if (type == "QuantEmbedding") {
      auto emb = std::dynamic_pointer_cast<nn::Embedding>(m);
      QSLIM_CHECK(emb != nullptr, "expected an Embedding, found ", m->type_name());
      QSLIM_CHECK(axis == 0 || axis == -1, "embedding steps are per row (axis 0) or per table (-1), got axis ", axis);
      auto q = std::make_shared<QuantEmbedding>(emb->num_embeddings(), emb->embedding_dim(), emb->padding_idx(),
                                                grid.bits(), axis == 0);
      if (e.contains("clip_threshold")) {
        const json& t = e.at("clip_threshold");
        QSLIM_CHECK(t.is_number() && t.get<double>() > 0, "clip_threshold must be a positive number, got ", t.dump());
        q->set_clip_threshold(t.get<double>());
      }
      return q;
    }
    const bool bias = r.boolean(e, "has_bias");
    if (type == "DynamicQuantConv2D") {
      auto conv = std::dynamic_pointer_cast<nn::Conv2D>(m);
      QSLIM_CHECK(conv != nullptr, "expected a Conv2D, found ", m->type_name());
      return std::make_shared<DynamicQuantConv2D>(*conv, source, grid.bits(), axis, bias);
    }
    auto lin = std::dynamic_pointer_cast<nn::Linear>(m);
    QSLIM_CHECK(lin != nullptr, "expected a Linear, found ", m->type_name());
    return std::make_shared<DynamicQuantLinear>(lin->in_features(), lin->out_features(), grid.bits(), axis, bias);
  } catch (const Error& err) {
    const std::string msg = err.what();
    if (msg.rfind(r.where, 0) == 0) throw;
    QSLIM_FAIL(r.where, ": ", msg);
  }
}

// Replaces the float layers named in `layers` by zeroed converted layers of the recorded shapes.
void rebuild_layers(nn::Module& model, const json& layers, const std::string& where, const std::string& spec) {
  QSLIM_CHECK(layers.is_array() && !layers.empty(), where, ": metadata 'layers' must be a non-empty array");
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& e = layers[i];
    MetaReader r{where + ": layer entry " + std::to_string(i)};
    const std::string name = r.str(e, "name");
    r.where = where + ": layer '" + name + "'";
    const std::string type = r.str(e, "type"), source = r.str(e, "source");
    nn::ModulePtr m;
    try {
      m = model.get_submodule(name);
    } catch (const Error& err) {
      QSLIM_FAIL(r.where, ": not in model '", spec, "': ", err.what());
    }
    const std::string found = QuantConfig::quant_type_of(*m);
    QSLIM_CHECK(found == source, r.where, ": the metadata says it was a ", source, " but model '", spec, "' has a ",
                found, " there");
    const json& quant = r.at(e, "quant");
    nn::ModulePtr converted;
    if (type == "ConvertedConv2D" || type == "ConvertedLinear") {
      const json& w = r.at(quant, "weight");
      const QuantGrid wgrid = r.grid(w);
      const int64_t axis = r.integer(w, "axis");
      const ActQuantSpec in = r.act_spec(r.at(quant, "input"));
      const bool bias = r.boolean(e, "has_bias");
      std::shared_ptr<ConvertedWeightLayer> cw;
      try {
        if (type == "ConvertedConv2D") {
          auto conv = std::dynamic_pointer_cast<nn::Conv2D>(m);
          QSLIM_CHECK(conv != nullptr, "expected a Conv2D, found ", m->type_name());
          cw = std::make_shared<ConvertedConv2D>(*conv, source, wgrid, axis, in, bias);
        } else {
          auto lin = std::dynamic_pointer_cast<nn::Linear>(m);
          QSLIM_CHECK(lin != nullptr, "expected a Linear, found ", m->type_name());
          cw = std::make_shared<ConvertedLinear>(lin->in_features(), lin->out_features(), wgrid, axis, in, bias);
        }
      } catch (const Error& err) {
        QSLIM_FAIL(r.where, ": ", err.what());
      }
      if (e.contains("folded_bn")) {
        const std::string bn_name = r.str(e, "folded_bn");
        QSLIM_CHECK(parent_of(bn_name) == parent_of(name), r.where, ": folded batch norm '", bn_name,
                    "' is not a sibling of the conv");
        nn::ModulePtr bn;
        try {
          bn = model.get_submodule(bn_name);
        } catch (const Error& err) {
          QSLIM_FAIL(r.where, ": folded batch norm not in model '", spec, "': ", err.what());
        }
        QSLIM_CHECK(dynamic_cast<nn::BatchNorm2D*>(bn.get()), r.where, ": folded batch norm '", bn_name, "' is a ",
                    bn->type_name(), " in model '", spec, "', expected BatchNorm2D");
        model.replace_submodule(bn_name, std::make_shared<nn::Identity>());
        cw->set_folded_bn(bn_name.substr(bn_name.rfind('.') + 1));
      }
      converted = cw;
    } else if (type == "ConvertedOp") {
      const std::string point_name = r.str(e, "point");
      QSLIM_CHECK(point_name == "inputs" || point_name == "output", r.where, ": point '", point_name,
                  "' is not allowed; allowed: inputs, output");
      const OpQuantPoint point = point_name == "inputs" ? OpQuantPoint::Inputs : OpQuantPoint::Output;
      std::vector<ActQuantSpec> specs;
      if (point == OpQuantPoint::Output) {
        specs.push_back(r.act_spec(r.at(quant, "output")));
      } else if (quant.contains("input")) {
        specs.push_back(r.act_spec(quant.at("input")));
      } else {
        for (size_t k = 0; quant.contains("input_" + std::to_string(k)); ++k)
          specs.push_back(r.act_spec(quant.at("input_" + std::to_string(k))));
      }
      QSLIM_CHECK(!specs.empty() && specs.size() == quant.size(), r.where, ": quant records ", quant.dump(),
                  " do not describe the ", point_name, " of a ", source);
      converted = std::make_shared<ConvertedOp>(m, source, point, specs);
    } else if (type == "DynamicQuantConv2D" || type == "DynamicQuantLinear" || type == "QuantEmbedding") {
      converted = rebuild_weight_only(m, type, source, e, r);
    } else {
      QSLIM_FAIL(r.where, ": unknown converted type '", type,
                 "'; allowed: ConvertedConv2D, ConvertedLinear, ConvertedOp, DynamicQuantConv2D, DynamicQuantLinear, "
                 "QuantEmbedding");
    }
    model.replace_submodule(name, converted);
  }
}

// Every step size and zero point in the metadata must equal the loaded tensors.
void check_records(const nn::Module& model, const json& layers, const std::string& where) {
  std::map<std::string, const ConvertedLayer*> by_name;
  for (const auto& [name, layer] : converted_layers(model)) by_name[name] = layer;
  for (const json& e : layers) {
    const std::string name = e.at("name").get<std::string>();
    const ConvertedLayer* layer = by_name.at(name);
    for (const auto& rec : layer->quant_records()) {
      const json& m = e.at("quant").at(rec.tensor);
      bool ok;
      if (rec.params.per_channel()) {
        ok = m.contains("scale_tensor") && m["scale_tensor"] == name + "." + rec.tensor + "_scale";
      } else {
        ok = m.contains("s") && m.contains("z") && m["s"].is_number() && m["z"].is_number_integer() &&
             static_cast<float>(m["s"].get<double>()) == static_cast<float>(rec.params.scales()[0]) &&
             m["z"].get<int64_t>() == rec.params.zero_points()[0];
      }
      QSLIM_CHECK(ok, where, ": layer '", name, "': the metadata's ", rec.tensor,
                  " step size / zero point disagrees with the stored tensors (the file was edited or is corrupt)");
    }
  }
}

// Version 2 keeps each per-tensor step size and zero point only in the layer metadata (s, z):
// as tensors they cost a header entry each, about 100 bytes for 4 or 8 bytes of data, which
// mattered for small models. Per-channel steps stay tensors.
nn::NamedTensors without_metadata_steps(const nn::Module& model) {
  std::set<std::string> in_metadata;
  for (const auto& [name, layer] : converted_layers(model))
    for (const auto& rec : layer->quant_records())
      if (!rec.params.per_channel())
        for (const char* suffix : {"_scale", "_zero_point"}) in_metadata.insert(name + "." + rec.tensor + suffix);
  nn::NamedTensors out;
  for (auto& [name, t] : model.state_dict())
    if (!in_metadata.count(name)) out.emplace_back(name, t);
  return out;
}

// Rebuilds the step and zero-point tensors a version-2 file leaves out from the metadata's s and z.
void add_metadata_steps(const nn::Module& model, const json& layers, nn::NamedTensors& tensors,
                        const std::string& where) {
  std::set<std::string> present;
  for (const auto& [name, t] : tensors) present.insert(name);
  std::set<std::string> wanted;
  for (const auto& [name, t] : model.state_dict()) wanted.insert(name);
  for (const json& e : layers) {
    MetaReader r{where + ": layer '" + e.at("name").get<std::string>() + "'"};
    for (const auto& item : r.at(e, "quant").items()) {
      const std::string& tensor = item.key();
      const json& rec = item.value();
      if (!rec.contains("s")) continue;
      const std::string prefix = e.at("name").get<std::string>() + "." + tensor;
      const json& s = rec.at("s");
      QSLIM_CHECK(s.is_number() && std::isfinite(s.get<double>()) && s.get<double>() > 0, r.where, ": ", tensor,
                  " step size s must be a positive number, got ", s.dump());
      const int64_t z = r.integer(rec, "z");
      const QuantGrid grid = r.grid(rec);
      QSLIM_CHECK(z >= grid.qmin() && z <= grid.qmax(), r.where, ": ", tensor, " zero point ", z, " lies outside ",
                  grid.to_string());
      if (wanted.count(prefix + "_scale") && !present.count(prefix + "_scale"))
        tensors.emplace_back(prefix + "_scale", full({1}, static_cast<float>(s.get<double>())));
      if (wanted.count(prefix + "_zero_point") && !present.count(prefix + "_zero_point"))
        tensors.emplace_back(prefix + "_zero_point", full({1}, static_cast<double>(z), DType::I32));
    }
  }
}

// 1: every step and zero point also stored as a tensor; 2: per-tensor ones only in the metadata.
int format_version(const std::map<std::string, std::string>& meta, const std::string& where) {
  auto it = meta.find("format_version");
  QSLIM_CHECK(it != meta.end(), where, ": metadata has no 'format_version'");
  QSLIM_CHECK(it->second == "1" || it->second == "2", where, ": format_version '", it->second,
              "' is not supported; allowed: 1, 2");
  return std::stoi(it->second);
}

void check_format(const std::map<std::string, std::string>& meta, const std::string& where) {
  auto it = meta.find("format");
  QSLIM_CHECK(it != meta.end() && it->second == kConvertedFormat, where, ": not a ", kConvertedFormat,
              " converted model (metadata format ", it == meta.end() ? std::string("missing") : "'" + it->second + "'",
              "); an FP32 checkpoint loads with nn::load_module into its float model");
}

nn::ModulePtr rebuild(const std::string& spec, const json& layers, const std::string& where,
                      const ModelBuilder& build) {
  nn::ModulePtr model;
  try {
    model = build ? build(spec) : models::create_model(spec);
  } catch (const Error& e) {
    QSLIM_FAIL(where, ": cannot build model '", spec, "': ", e.what());
  }
  QSLIM_CHECK(model != nullptr, where, ": the model builder returned no model for '", spec, "'");
  rebuild_layers(*model, layers, where, spec);
  return model;
}

}  // namespace

void save_converted(const std::string& path, const nn::Module& model, const QuantConfig& config,
                    const std::string& model_spec) {
  save_converted(path, model, config, model_spec, {}, nullptr);
}

void save_converted(const std::string& path, const nn::Module& model, const QuantConfig& config,
                    const std::string& model_spec, const std::map<std::string, std::string>& extra_metadata,
                    const ModelBuilder& build) {
  for (const auto& [key, value] : extra_metadata)
    for (const char* own : {"format", "format_version", "model", "quant_config", "layers"})
      QSLIM_CHECK(key != own, "save_converted: ", path, ": extra metadata may not set '", key,
                  "', which the qslim-int8 format writes itself");
  const json layers = layers_json(model);
  // Save only what load_converted can rebuild: the same rebuild must accept this model's state.
  nn::ModulePtr check = rebuild(model_spec, layers, "save_converted: " + path, build);
  try {
    check->load_state_dict(model.state_dict(), /*strict=*/true);
  } catch (const Error& e) {
    QSLIM_FAIL("save_converted: ", path, ": model '", model_spec,
               "' rebuilt from the converted layers does not match this model: ", e.what());
  }
  std::map<std::string, std::string> meta = extra_metadata;
  meta["format"] = kConvertedFormat;
  meta["format_version"] = "2";
  meta["model"] = model_spec;
  meta["quant_config"] = json::parse(config.to_json()).dump();
  meta["layers"] = layers.dump();
  nn::save_tensors(path, without_metadata_steps(model), meta);
}

std::map<std::string, std::string> converted_metadata(const std::string& path) {
  nn::LoadedTensors loaded = nn::load_tensors(path);
  check_format(loaded.metadata, "converted_metadata: " + path);
  return loaded.metadata;
}

nn::ModulePtr load_converted(const std::string& path) { return load_converted(path, nullptr); }

nn::ModulePtr load_converted(const std::string& path, const ModelBuilder& build) {
  nn::LoadedTensors loaded = nn::load_tensors(path);
  const std::string where = "load_converted: " + path;
  check_format(loaded.metadata, where);
  for (const char* key : {"model", "layers", "quant_config"})
    QSLIM_CHECK(loaded.metadata.count(key), where, ": metadata has no '", key, "'");
  json layers;
  try {
    layers = json::parse(loaded.metadata.at("layers"));
    QuantConfig::from_json(loaded.metadata.at("quant_config"), path + " metadata");
  } catch (const json::exception& e) {
    QSLIM_FAIL(where, ": metadata 'layers' is not valid JSON: ", e.what());
  }
  const std::string spec = loaded.metadata.at("model");
  const int version = format_version(loaded.metadata, where);
  nn::ModulePtr model = rebuild(spec, layers, where, build);
  if (version >= 2) add_metadata_steps(*model, layers, loaded.tensors, where);
  try {
    model->load_state_dict(loaded.tensors, /*strict=*/true);
  } catch (const Error& e) {
    QSLIM_FAIL(where, ": the tensors do not fit model '", spec, "' rebuilt from the metadata: ", e.what());
  }
  check_records(*model, layers, where);
  model->eval();
  return model;
}

}  // namespace qslim::quant
