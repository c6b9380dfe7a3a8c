// Where quantization loses accuracy (QUANT_SPEC.md §5): per-layer output error of a converted
// model against its float twins, and a sensitivity ranking (accuracy with only one layer quantized).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/float_twin.h"

namespace qslim::quant {

struct LayerError {
  std::string name, type;  // dotted name, the quant type it was converted from ("Conv2D", "Add", ...)
  double sqnr_db = 0;      // 10 log10(sum y_fp^2 / sum (y_fp - y_q)^2); +inf when equal
  double cosine = 0;
  double mse = 0;
};

// Runs `inputs` through the converted model and through the same model with every converted layer
// swapped for its twin (restored afterwards), comparing each converted layer's output. Errors
// accumulate through the network, as a user sees them. Worst (lowest SQNR) first. Every converted
// layer (weight layers and quantized ops) is reported; all calls of a layer are pooled. Runs in eval
// mode without gradients; the model (modules, modes, tensors) is left exactly as it was. Throws
// when the model has no converted layer, a layer has no twin, or the forward never calls a layer.
std::vector<LayerError> layer_report(nn::Module& converted, const FloatTwins& twins, const Tensor& inputs);

struct LayerSensitivity {
  std::string name;
  double metric = 0;  // evaluate() with only this layer quantized
  double drop = 0;    // metric of the all-float model minus `metric`
};

// For each converted layer: swap every other converted layer for its twin, evaluate, restore.
// Most sensitive (largest drop) first. `evaluate` returns e.g. top-1 in percent; it runs under
// NoGradGuard and may switch modes (they are restored). *float_metric receives the all-float metric.
// Keeping the N most sensitive layers in FP32: re-run PTQ skipping the first N names.
std::vector<LayerSensitivity> sensitivity_ranking(nn::Module& converted, const FloatTwins& twins,
                                                  const std::function<double(nn::Module&)>& evaluate,
                                                  double* float_metric = nullptr);

// Markdown tables of both (either may be empty).
std::string format_layer_report(const std::vector<LayerError>& errors,
                                const std::vector<LayerSensitivity>& sensitivity);

}  // namespace qslim::quant
