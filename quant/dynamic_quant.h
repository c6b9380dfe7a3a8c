// Dynamic (weight-only) post-training quantization, PaddleSlim's quant_post_dynamic (QUANT_SPEC.md §6).
//
//   quant::DynamicOptions o;                       // 8 bits, channel_wise_abs_max, Conv2D/DepthwiseConv2D/Linear
//   o.weight_bits = 16;
//   quant::quant_post_dynamic(*model, o);          // in place: Linear -> DynamicQuantLinear, ...
//
// No calibration data is needed: the weights are stored as int8/int16 with steps from their
// abs-max (per output channel or per tensor); activations stay FP32. The file form reads an FP32
// checkpoint and writes a qslim-int8 file (quant/quantized_io.h; `qslim eval` runs it) and,
// with generate_test_model, an FP32 checkpoint of the dequantized weights that any float loader
// reads (PaddleSlim's test model: it shows the accuracy effect of the weight rounding alone).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "quant/quant_config.h"

namespace qslim::quant {

struct DynamicOptions {
  int weight_bits = 8;                                        // 8 | 16
  std::string weight_quantize_type = "channel_wise_abs_max";  // | "abs_max" (one step per tensor)
  // Quant types or PaddleSlim aliases of weight layers: Conv2D, DepthwiseConv2D, Linear, conv2d,
  // depthwise_conv2d, mul, matmul, matmul_v2.
  std::vector<std::string> quantizable_op_type{"Conv2D", "DepthwiseConv2D", "Linear"};
  std::vector<std::string> not_quant_pattern{"skip_quant"};
  bool generate_test_model = false;  // file form only

  // Throws naming the bad option and listing the allowed values.
  void validate() const;
  // The canonical quant types selected (aliases resolved, duplicates dropped).
  std::vector<std::string> op_types() const;
  // The same choice as a QuantConfig (weight_bits, weight_quantize_type, quantize_op_types,
  // not_quant_pattern), recorded in saved files.
  QuantConfig to_quant_config() const;
  std::string to_json() const;
};

// The weight types dynamic quantization can handle, and their PaddleSlim aliases.
const std::vector<std::string>& dynamic_quant_types();

struct DynamicLayer {
  std::string name;        // dotted name
  std::string quant_type;  // "Conv2D", "DepthwiseConv2D", "Linear"
};

// What quant_post_dynamic would replace, in model order. Throws when the options are invalid, the
// model is already quantized, or nothing would be quantized (naming the skipped layers).
std::vector<DynamicLayer> plan_quant_post_dynamic(nn::Module& model, const DynamicOptions& options = {});
// Replaces every planned layer by its DynamicQuantLinear / DynamicQuantConv2D, in place.
std::vector<DynamicLayer> quant_post_dynamic(nn::Module& model, const DynamicOptions& options = {});

// The float state dict of a model holding dynamic or embedding-quantized layers: each one's
// integer weight (table) dequantized to f32 under its own name, its bias, and no step tensors;
// every other tensor as is. It loads strictly into the original float model.
nn::NamedTensors dequantized_state_dict(const nn::Module& model);

// ---- file form (PaddleSlim's quant_post_dynamic(model_dir, save_model_dir, ...)) ----

struct DynamicFiles {
  std::string quantized;   // <save_dir>/model_int8.safetensors or model_int16.safetensors
  std::string test_model;  // <save_dir>/model_test_fp32.safetensors, or "" without generate_test_model
  std::string model_spec;
  std::vector<DynamicLayer> layers;
};

// Reads an FP32 model checkpoint (qslim train's model.safetensors; its metadata names the model,
// or pass model_spec), quantizes it and writes the files. The checkpoint's dataset, mean and std
// metadata are kept in both files, so `qslim eval` normalises as in training.
DynamicFiles quant_post_dynamic(const std::string& fp32_checkpoint, const std::string& save_dir,
                                const DynamicOptions& options = {}, const std::string& model_spec = "");

// File names used by the file form.
std::string dynamic_model_file(int weight_bits);  // "model_int8.safetensors", "model_int16.safetensors"
inline constexpr const char* kDynamicTestModelFile = "model_test_fp32.safetensors";

}  // namespace qslim::quant
