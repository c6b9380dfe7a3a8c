// More forms of save_converted / load_converted (quant/quantized_io.h; implemented in
// quantized_io.cpp), same "qslim-int8" format:
//  - extra metadata entries stored beside the format's own (e.g. the dataset, mean and std of the
//    FP32 checkpoint, so `qslim eval` normalises a converted file as in training);
//  - a model builder for networks outside the zoo (a model spec the builder understands, e.g. a
//    test network holding an Embedding); the default is models::create_model.
#pragma once
#include <functional>
#include <map>
#include <string>

#include "nn/module.h"
#include "quant/quant_config.h"
#include "quant/quantized_io.h"

namespace qslim::quant {

// Builds the float model a converted file names by its "model" spec.
using ModelBuilder = std::function<nn::ModulePtr(const std::string& model_spec)>;

// extra_metadata may not use the format's own keys (format, format_version, model, quant_config,
// layers): that throws naming the key.
void save_converted(const std::string& path, const nn::Module& model, const QuantConfig& config,
                    const std::string& model_spec, const std::map<std::string, std::string>& extra_metadata,
                    const ModelBuilder& build = nullptr);
nn::ModulePtr load_converted(const std::string& path, const ModelBuilder& build);

}  // namespace qslim::quant
