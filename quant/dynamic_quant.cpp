#include "quant/dynamic_quant.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "models/registry.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/dynamic_layers.h"
#include "quant/quant_embedding.h"
#include "quant/quant_layers.h"
#include "quant/quantized_io.h"

namespace qslim::quant {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& weight_types() {
  static const std::vector<std::string> t = {"Conv2D", "DepthwiseConv2D", "Linear"};
  return t;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Metadata keys of an FP32 checkpoint that describe its data, kept in the files derived from it.
const std::vector<std::string>& data_keys() {
  static const std::vector<std::string> k = {"dataset", "mean", "std"};
  return k;
}

}  // namespace

const std::vector<std::string>& dynamic_quant_types() {
  static const std::vector<std::string> t = {"Conv2D", "DepthwiseConv2D", "Linear",   "conv2d", "depthwise_conv2d",
                                             "mul",    "matmul",          "matmul_v2"};
  return t;
}

// ---------------------------------------------------------------- DynamicOptions

void DynamicOptions::validate() const {
  check_dynamic_bits(weight_bits, "quant_post_dynamic");
  QSLIM_CHECK(weight_quantize_type == "channel_wise_abs_max" || weight_quantize_type == "abs_max",
              "quant_post_dynamic: unknown weight_quantize_type '", weight_quantize_type,
              "'; allowed: channel_wise_abs_max, abs_max");
  op_types();
}

std::vector<std::string> DynamicOptions::op_types() const {
  QSLIM_CHECK(!quantizable_op_type.empty(),
              "quant_post_dynamic: quantizable_op_type is empty; allowed entries: ", join(dynamic_quant_types()));
  std::vector<std::string> out;
  for (const std::string& name : quantizable_op_type) {
    std::vector<std::string> types;
    try {
      types = canonical_quant_types(name);
    } catch (const Error&) {
      QSLIM_FAIL("quant_post_dynamic: unknown quantizable op type '", name,
                 "'; allowed: ", join(dynamic_quant_types()));
    }
    for (const std::string& t : types) {
      QSLIM_CHECK(contains(weight_types(), t), "quant_post_dynamic: op type '", name, "' (", t,
                  ") has no weight to quantize; allowed: ", join(dynamic_quant_types()));
      if (!contains(out, t)) out.push_back(t);
    }
  }
  return out;
}

QuantConfig DynamicOptions::to_quant_config() const {
  validate();
  QuantSettings s;
  s.weight_bits = weight_bits;
  s.weight_quantize_type = weight_quantize_type;
  s.quantize_op_types = op_types();
  s.not_quant_pattern = not_quant_pattern;
  return QuantConfig(s);
}

std::string DynamicOptions::to_json() const {
  nlohmann::json j = {{"weight_bits", weight_bits},
                      {"weight_quantize_type", weight_quantize_type},
                      {"quantizable_op_type", quantizable_op_type},
                      {"not_quant_pattern", not_quant_pattern},
                      {"generate_test_model", generate_test_model}};
  return j.dump();
}

// ---------------------------------------------------------------- in memory

std::vector<DynamicLayer> plan_quant_post_dynamic(nn::Module& model, const DynamicOptions& options) {
  options.validate();
  const std::vector<std::string> types = options.op_types();
  std::vector<DynamicLayer> plan;
  std::vector<std::string> skipped, done;
  auto visit = [&](nn::Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [leaf, c] : m.named_children()) {
      const std::string name = dotted(prefix, leaf);
      QSLIM_CHECK(!dynamic_cast<const QuantedLayer*>(c.get()), "quant_post_dynamic: '", name, "' is a ", c->type_name(),
                  " (a QAT/PTQ wrapper); dynamic quantization takes a float model");
      if (auto* cl = dynamic_cast<const ConvertedLayer*>(c.get())) {
        done.push_back(name + " (" + cl->type_name() + ")");
        continue;
      }
      const bool weight_layer = dynamic_cast<const nn::Linear*>(c.get()) || dynamic_cast<const nn::Conv2D*>(c.get());
      const std::string type = QuantConfig::quant_type_of(*c);
      if (weight_layer && contains(types, type)) {
        bool skip = false;
        for (const std::string& pat : options.not_quant_pattern)
          skip = skip || (!pat.empty() && name.find(pat) != std::string::npos);
        if (skip) {
          skipped.push_back(name);
        } else {
          plan.push_back({name, type});
        }
        continue;
      }
      self(*c, name, self);
    }
  };
  visit(model, "", visit);
  if (plan.empty()) {
    QSLIM_FAIL("quant_post_dynamic: the model has no layer to quantize (quantizable types: ", join(types), ")",
               skipped.empty() ? "" : "; skipped by not_quant_pattern: " + join(skipped),
               done.empty() ? "" : "; already quantized: " + join(done));
  }
  return plan;
}

std::vector<DynamicLayer> quant_post_dynamic(nn::Module& model, const DynamicOptions& options) {
  const std::vector<DynamicLayer> plan = plan_quant_post_dynamic(model, options);
  const int64_t axis = options.weight_quantize_type == "channel_wise_abs_max" ? 0 : -1;
  for (const DynamicLayer& l : plan) {
    nn::ModulePtr m = model.get_submodule(l.name);
    nn::ModulePtr q;
    if (auto* lin = dynamic_cast<const nn::Linear*>(m.get())) {
      q = DynamicQuantLinear::from_float(*lin, options.weight_bits, axis);
    } else {
      q = DynamicQuantConv2D::from_float(dynamic_cast<const nn::Conv2D&>(*m), options.weight_bits, axis);
    }
    model.replace_submodule(l.name, q);
  }
  return plan;
}

nn::NamedTensors dequantized_state_dict(const nn::Module& model) {
  std::map<std::string, Tensor> weights;  // "<layer>.weight" -> dequantized f32
  std::set<std::string> scales;           // "<layer>.weight_scale" (dropped)
  auto visit = [&](const nn::Module& m, const std::string& prefix, auto&& self) -> void {
    for (const auto& [leaf, c] : m.named_children()) {
      const std::string name = dotted(prefix, leaf);
      if (auto* d = dynamic_cast<const DynamicWeightLayer*>(c.get())) {
        weights[name + ".weight"] = d->dequantized_weight().clone();
        scales.insert(name + ".weight_scale");
      } else if (auto* e = dynamic_cast<const QuantEmbedding*>(c.get())) {
        weights[name + ".weight"] = e->dequantized_table();
        scales.insert(name + ".weight_scale");
      } else {
        QSLIM_CHECK(!dynamic_cast<const ConvertedLayer*>(c.get()) && !dynamic_cast<const QuantedLayer*>(c.get()),
                    "dequantized_state_dict: '", name, "' is a ", c->type_name(),
                    ", which quantizes activations too and has no float equivalent; only dynamic and embedding "
                    "quantized layers can be dequantized");
        self(*c, name, self);
      }
    }
  };
  visit(model, "", visit);
  QSLIM_CHECK(!weights.empty(), "dequantized_state_dict: the model holds no dynamic or embedding quantized layer");
  nn::NamedTensors out;
  for (const auto& [name, t] : model.state_dict()) {
    if (scales.count(name)) continue;
    auto it = weights.find(name);
    out.emplace_back(name, it == weights.end() ? t : it->second);
  }
  return out;
}

// ---------------------------------------------------------------- file form

std::string dynamic_model_file(int weight_bits) {
  check_dynamic_bits(weight_bits, "dynamic_model_file");
  return "model_int" + std::to_string(weight_bits) + ".safetensors";
}

DynamicFiles quant_post_dynamic(const std::string& fp32_checkpoint, const std::string& save_dir,
                                const DynamicOptions& options, const std::string& model_spec) {
  const QuantConfig config = options.to_quant_config();  // validates before any work
  QSLIM_CHECK(fs::exists(fp32_checkpoint), "quant_post_dynamic: checkpoint ", fp32_checkpoint, " does not exist");
  nn::LoadedTensors loaded = nn::load_tensors(fp32_checkpoint);
  const auto& meta = loaded.metadata;
  auto fmt = meta.find("format");
  QSLIM_CHECK(fmt == meta.end() || fmt->second == "qslim-fp32", "quant_post_dynamic: ", fp32_checkpoint, " is a '",
              fmt == meta.end() ? "" : fmt->second,
              "' file; it takes an FP32 model checkpoint ('qslim-fp32', the model.safetensors written by qslim train)");
  DynamicFiles files;
  files.model_spec = model_spec;
  if (files.model_spec.empty() && meta.count("model")) files.model_spec = meta.at("model");
  QSLIM_CHECK(!files.model_spec.empty(), "quant_post_dynamic: ", fp32_checkpoint,
              ": no 'model' entry in the checkpoint metadata; pass the model spec");
  nn::ModulePtr model = models::create_model(files.model_spec);
  try {
    model->load_state_dict(loaded.tensors, /*strict=*/true);
  } catch (const Error& e) {
    QSLIM_FAIL("quant_post_dynamic: ", fp32_checkpoint, ": does not fit model '", files.model_spec, "': ", e.what());
  }
  model->eval();
  files.layers = quant_post_dynamic(*model, options);

  std::map<std::string, std::string> extra;
  for (const std::string& k : data_keys())
    if (meta.count(k)) extra[k] = meta.at(k);
  extra["quant_method"] = "dynamic";
  extra["dynamic_options"] = options.to_json();
  extra["source_checkpoint"] = fp32_checkpoint;
  fs::create_directories(save_dir);
  files.quantized = (fs::path(save_dir) / dynamic_model_file(options.weight_bits)).string();
  save_converted(files.quantized, *model, config, files.model_spec, extra);
  if (options.generate_test_model) {
    std::map<std::string, std::string> test_meta;
    for (const std::string& k : data_keys())
      if (meta.count(k)) test_meta[k] = meta.at(k);
    test_meta["format"] = "qslim-fp32";
    test_meta["model"] = files.model_spec;
    test_meta["dequantized_from"] = "dynamic int" + std::to_string(options.weight_bits) + " " +
                                    options.weight_quantize_type + " weights of " + fp32_checkpoint;
    files.test_model = (fs::path(save_dir) / kDynamicTestModelFile).string();
    nn::save_tensors(files.test_model, dequantized_state_dict(*model), test_meta);
  }
  return files;
}

}  // namespace qslim::quant
