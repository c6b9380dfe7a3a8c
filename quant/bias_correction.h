// Data-driven bias correction (Nagel et al. 2019, QUANT_SPEC.md §5) for converted models.
// For each ConvertedConv2D / ConvertedLinear in model order, E[twin(x) - layer(x)] per output
// channel over the calibration batches is added to the layer's float bias, where x is the layer's
// input inside the converted model (so the corrections of earlier layers are already seen).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/float_twin.h"

namespace qslim::quant {

struct BiasCorrectionLayer {
  std::string name;
  double mean_abs_correction = 0;  // mean over channels of |correction|
  bool corrected = false;          // false when the layer has no bias (reported, left alone)
};

// `batches`: calibration inputs (NCHW f32). Runs in eval mode without gradients. Throws when the
// model has no converted weight layer, a layer has no twin, or batches is empty.
std::vector<BiasCorrectionLayer> bias_correction(nn::Module& converted, const FloatTwins& twins,
                                                 const std::vector<Tensor>& batches);

// PaddleSlim's weight-statistics variant (no data; Paddle parity): per output channel (per tensor
// for per-tensor steps), with W the twin's float weight and Wq the dequantized integers,
//   W' = (Wq + mean(W - Wq)) * std(W) / (std(Wq) + 1e-8)      (population std)
// is re-quantized with the layer's frozen steps and stored as its integer weight. The bias is left
// alone; every layer reports corrected = true and mean_abs_correction = mean over channels of
// |mean(W - Wq)|. Throws when the model has no converted weight layer or a layer has no twin.
std::vector<BiasCorrectionLayer> weight_bias_correction(nn::Module& converted, const FloatTwins& twins);

}  // namespace qslim::quant
