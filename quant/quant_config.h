// QuantConfig: which layers quantization-aware training wraps and with which quanters
// (QUANT_SPEC.md §7). Keys and defaults follow PaddleSlim's quant config dict; the qslim keys
// (rounding, ste, fold_bn, ...) extend it.
//
// A module is quantized when (a) its quant type has a QAT mapping, (b) the type is in the
// effective quantize_op_types (the configured list, plus every quantizable type when
// is_full_quantize, plus TensorRT's types when for_tensorrt) or some type/name/layer rule matches
// it, and (c) it is not skipped. Skips: a dotted name containing a not_quant_pattern entry (which
// covers everything registered under a "skip_quant" name), or lying inside a module passed to
// skip(). Quanters resolve field by field, default < type rule < name rule < layer rule: an unset
// field of a rule keeps what the lower-priority rules gave.
//
// Quant type names: "Conv2D" (groups == 1 or grouped), "DepthwiseConv2D" (groups == in_channels
// > 1; a separate type, as in PaddleSlim), "Linear", and the weight-less "Add", "Concat",
// "MaxPool2D", "AvgPool2D", "AdaptiveAvgPool2D", "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh",
// "Hardswish", "Hardsigmoid", "SiLU", "GELU". PaddleSlim's op names are accepted as aliases
// (conv2d, depthwise_conv2d, mul, matmul, matmul_v2, elementwise_add, concat, pool2d, relu, ...).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "quant/quanter_factory.h"

namespace qslim::quant {

// How to build one quanter: a type from quanter_types() and its options. make() supplies the
// channel count of the tensor it will quantize (weights: out channels, axis 0).
struct QuanterFactory {
  std::string type = "moving_average_abs_max";
  QuanterOptions options;

  QuanterPtr make(int64_t channels = 0) const;
  // "channel_wise_abs_max(weight, bits=8, grid=narrow, ...)" for plans and messages.
  std::string describe() const;

  // A factory of `type` for `role` with `bits`, every other option at its default.
  static QuanterFactory of(const std::string& type, QuantRole role, int bits = 8);
};

// Overrides of one rule; an unset field keeps the lower-priority choice.
struct QuantRule {
  std::optional<QuanterFactory> weight = std::nullopt;
  std::optional<QuanterFactory> activation = std::nullopt;
};

// The quanters resolved for one module (weight-less ops use only `activation`).
struct ResolvedQuant {
  QuanterFactory weight;
  QuanterFactory activation;
  std::string source = "default";  // the highest-priority rule that set a field: "type Linear", "name fc", "layer"
};

class QuantedLayer;
// Builds the QAT wrapper of `layer` (whose quant type was mapped) with its resolved quanters.
using QatLayerFactory =
    std::function<std::shared_ptr<QuantedLayer>(const nn::ModulePtr& layer, const ResolvedQuant& q)>;

// Every key of the JSON form as a plain field; QuantConfig validates them.
struct QuantSettings {
  std::string weight_quantize_type = "channel_wise_abs_max";        // quanter_types()
  std::string activation_quantize_type = "moving_average_abs_max";  // quanter_types() but channel_wise_abs_max
  int weight_bits = 8;
  int activation_bits = 8;
  std::vector<std::string> not_quant_pattern{"skip_quant"};
  std::vector<std::string> quantize_op_types{"Conv2D", "DepthwiseConv2D", "Linear"};
  std::string dtype = "int8";   // "int8" | "uint8" (uint8: unsigned activation grid)
  int64_t window_size = 10000;  // range_abs_max
  double moving_rate = 0.9;     // moving_average_abs_max
  bool for_tensorrt = false;    // needs channel_wise_abs_max weights and 8 bits
  bool is_full_quantize = false;
  Preprocess weight_preprocess_type = Preprocess::None;  // JSON null | "PACT"
  Preprocess activation_preprocess_type = Preprocess::None;
  double pact_alpha = 20.0;                // initial PACT clip
  Rounding rounding = Rounding::HalfEven;  // "half_even" | "half_away"
  // Straight-through estimator of the abs-max family; lsq_plus quanters always use LSQ's gradient.
  SteMode ste = SteMode::Clipped;           // "clipped" | "identity"
  std::optional<GridKind> activation_grid;  // "signed" | "unsigned"; unset: from dtype
  bool lsq_per_channel = false;             // lsq_plus weights: one step per output channel
  bool fold_bn = false;                     // fold Conv2D + following BatchNorm2D (QuantedConvBN2D)
  int64_t freeze_bn_after_steps = -1;       // -1 never; needs fold_bn
};

class QuantConfig {
 public:
  QuantConfig();                                        // PaddleSlim's defaults
  explicit QuantConfig(const QuantSettings& settings);  // throws for invalid keys or combinations

  // Parses a JSON object of QuantSettings keys plus optional "type_config" / "name_config" objects
  // mapping a type / dotted name to a rule object with the keys weight_quantize_type,
  // weight_bits, weight_preprocess_type, activation_quantize_type, activation_bits,
  // activation_preprocess_type, activation_grid (unset ones keep the defaults). Unknown keys,
  // wrong JSON types and invalid values throw, naming `source` and listing the allowed values.
  static QuantConfig from_json(const std::string& text, const std::string& source = "<json>");
  static QuantConfig from_json_file(const std::string& path);
  // Settings, type rules and name rules in the form from_json reads. Layer rules, skip() scopes,
  // explicit default factories and custom mappings are held by pointer or code and are left out.
  std::string to_json() const;

  const QuantSettings& settings() const { return settings_; }

  // ---- quanters ----
  // Built from the settings unless replaced.
  QuanterFactory default_weight() const;
  QuanterFactory default_activation() const;
  void set_default_weight(const QuanterFactory& f);
  void set_default_activation(const QuanterFactory& f);

  void add_type_config(const std::string& type_name, const QuantRule& rule);    // quant type or Paddle alias
  void add_name_config(const std::string& dotted_name, const QuantRule& rule);  // exact dotted name
  void add_layer_config(const nn::Module* layer, const QuantRule& rule);        // that exact module
  // Skips `layer` and everything inside it.
  void skip(const nn::Module* layer);
  // Maps a quant type (built-in or new, e.g. a custom module's type_name()) to its wrapper.
  void add_qat_layer_mapping(const std::string& source_type, QatLayerFactory factory);

  // ---- queries used by quant_aware ----
  // The quant type of a module ("DepthwiseConv2D" for a depthwise Conv2D, else type_name()).
  static std::string quant_type_of(const nn::Module& m);
  bool has_mapping(const std::string& quant_type) const;         // built-in or custom
  bool has_custom_mapping(const std::string& quant_type) const;  // added by add_qat_layer_mapping
  QatLayerFactory mapping(const std::string& quant_type) const;  // custom first; throws when unmapped
  bool quantizes_type(const std::string& quant_type) const;      // in the effective quantize_op_types
  std::vector<std::string> effective_op_types() const;
  bool skipped_by_pattern(const std::string& dotted_name) const;
  bool skipped_layer(const nn::Module* m) const;
  // Field-by-field resolution; `matched` is set when a type, name or layer rule applies.
  ResolvedQuant resolve(const nn::Module* layer, const std::string& dotted_name, const std::string& quant_type,
                        bool* matched = nullptr) const;
  const std::vector<std::pair<std::string, QuantRule>>& name_rules() const { return name_rules_; }
  const std::vector<std::pair<const nn::Module*, QuantRule>>& layer_rules() const { return layer_rules_; }
  const std::vector<std::pair<std::string, QuantRule>>& type_rules() const { return type_rules_; }

 private:
  QuantSettings settings_;
  std::optional<QuanterFactory> default_weight_, default_activation_;
  std::vector<std::pair<std::string, QuantRule>> type_rules_, name_rules_;
  std::vector<std::pair<const nn::Module*, QuantRule>> layer_rules_;
  std::vector<const nn::Module*> skipped_;
  std::vector<std::pair<std::string, QatLayerFactory>> mappings_;
};

// Canonical quant type for a name or PaddleSlim alias ("mul" -> {"Linear"}, "pool2d" -> the three
// pooling types); throws listing the accepted names.
std::vector<std::string> canonical_quant_types(const std::string& name);
// Every built-in quantizable type, and the subset TensorRT quantizes (PaddleSlim's list).
const std::vector<std::string>& quantizable_types();
const std::vector<std::string>& tensorrt_types();

}  // namespace qslim::quant
