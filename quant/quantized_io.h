// Converted (integer) models on disk: safetensors with integer weight dtypes and metadata
//   "format": "qslim-int8"   (what loaders check; a float loader must refuse such a file)
//   "model":  the zoo spec, e.g. "resnet20" or "lenet:num_classes=10"
//   "quant_config": QuantConfig::to_json()
//   "layers": JSON array, one entry per converted layer: its name, converted and source types, the
//             folded BatchNorm's name, and per quantized tensor ("weight", "input", "input_0",
//             "output") its bits, grid and axis; per-tensor ones (activations) also the step s, zero
//             point z, rounding and PaddleSlim threshold T = s * qmax; per-channel weights name
//             their step tensor ("<layer>.weight_scale") and give the largest threshold T_max.
//   "format_version": "2": per-tensor steps and zero points live only in "layers" (s, z), not as
//             tensors; version-1 files, which also stored them as tensors, still load.
// load_converted rebuilds the model from the spec and the layer entries (so layer rules, skip()
// scopes and per-layer bits need no config replay), then loads every tensor strictly.
#pragma once
#include <functional>
#include <map>
#include <string>

#include "nn/module.h"
#include "quant/quant_config.h"

namespace qslim::quant {

inline constexpr const char* kConvertedFormat = "qslim-int8";

// `model` must have been converted (quant::convert); model_spec must rebuild its float form with
// models::create_model. Written atomically (nn::save_tensors).
void save_converted(const std::string& path, const nn::Module& model, const QuantConfig& config,
                    const std::string& model_spec);

// Throws naming the file when it is not a qslim-int8 file (e.g. an FP32 checkpoint), when its
// metadata does not fit the model it names, or when the tensors do not fit the rebuilt model.
nn::ModulePtr load_converted(const std::string& path);

// More forms, same format: extra metadata entries stored beside the format's own (e.g. the
// dataset, mean and std of the FP32 checkpoint, so `qslim eval` normalises as in training), and a
// model builder for networks outside the zoo (default: models::create_model).
// Builds the float model a converted file names by its "model" spec.
using ModelBuilder = std::function<nn::ModulePtr(const std::string& model_spec)>;

// extra_metadata may not use the format's own keys (format, format_version, model, quant_config,
// layers): that throws naming the key.
void save_converted(const std::string& path, const nn::Module& model, const QuantConfig& config,
                    const std::string& model_spec, const std::map<std::string, std::string>& extra_metadata,
                    const ModelBuilder& build = nullptr);
nn::ModulePtr load_converted(const std::string& path, const ModelBuilder& build);

// The metadata of a converted file (validated to be qslim-int8), e.g. for reports.
std::map<std::string, std::string> converted_metadata(const std::string& path);

}  // namespace qslim::quant
