// Quantization-aware training entry points (QUANT_SPEC.md §2, §5, §7, §8).
//
//   quant::quant_aware(*model, config);   // wraps layers in place; then build the optimizer from
//                                         // model->parameters() and train as usual
//   quant::convert(*model);               // freezes every scale, stores integer weights
//
// quant_aware keeps every float parameter and buffer under its old dotted name (a wrapper
// registers the wrapped layer's tensors as its own; a folded BatchNorm2D stays in place as a
// FoldedBatchNorm2D holding its tensors), so checkpoints and optimizer state keep their names;
// the quanters add parameters and buffers under "<layer>.weight_quanter.*" and
// "<layer>.activation_quanter.*".
#pragma once
#include <string>
#include <vector>

#include "nn/module.h"
#include "quant/quant_config.h"

namespace qslim::quant {

// One module quant_aware wraps.
struct PlannedLayer {
  std::string name;        // dotted name in the model
  std::string quant_type;  // "Conv2D", "DepthwiseConv2D", "Linear", "Add", ...
  ResolvedQuant quant;
  std::string folded_bn;  // dotted name of the BatchNorm2D folded into this conv (fold_bn), or ""
};

// What quant_aware would do, in model order, without changing the model. Throws when the model is
// already quantized, when a name or layer rule matches no module (naming the rule), or matches a
// module that cannot be quantized or is skipped.
std::vector<PlannedLayer> plan_quant_aware(nn::Module& model, const QuantConfig& config);

// Replaces every planned module by its QAT wrapper (replace_submodule), in place.
void quant_aware(nn::Module& model, const QuantConfig& config);

// Replaces every QAT wrapper by its converted layer (integer weights, frozen scales, simulated
// float forward) and every FoldedBatchNorm2D by an Identity. Throws, naming the layer, when a
// quanter has no statistics yet (train or calibrate first) and when the model has no wrappers.
void convert(nn::Module& model);

}  // namespace qslim::quant
