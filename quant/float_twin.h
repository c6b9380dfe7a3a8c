// Float twins: the unquantized counterpart of every quantized layer of a wrapped model (after
// quant_aware or PTQ::quantize, before convert), for bias correction, AdaRound and the per-layer
// report. QuantedConv2D -> Conv2D with the same weight and bias; QuantedConvBN2D -> Conv2D whose
// weight and bias are the BN-folded ones (running statistics), so it stands where the converted
// layer will stand (its BatchNorm sibling becomes an Identity); QuantedLinear -> Linear;
// QuantedOp -> its wrapped op (the same object: weight-less ops hold no tensors). Tensors are
// copied (to f32), so later changes to the model do not leak in. Twins start in the wrapper's mode;
// the tools that use them run them in eval mode. Building twins leaves the global generator as it
// was (the float layers' default init draws from it and is then overwritten).
#pragma once
#include <map>
#include <string>

#include "nn/module.h"

namespace qslim::quant {

using FloatTwins = std::map<std::string, nn::ModulePtr>;  // dotted name -> float module

// Throws when the model holds no QuantedLayer.
FloatTwins float_twins(const nn::Module& wrapped_model);

}  // namespace qslim::quant
