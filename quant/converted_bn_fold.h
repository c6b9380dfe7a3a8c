// Folds the float BatchNorm2D layers that a converted model still carries into the ConvertedConv2D
// before them (the PaddleSlim default config quantizes convs without folding BN, so convert leaves
// each BN in FP32 — on a depthwise conv the BN's four floats per channel outweigh the int8 weights).
//
// Exact for per-channel weight steps: with f = gamma / sqrt(running_var + eps) per channel, the
// integer weights stay, the step becomes s_c |f_c| (weights negated where f_c < 0), and the bias
// becomes beta + (b - running_mean) f. The BN becomes an Identity recorded as the conv's folded
// sibling, so save_converted / load_converted round-trip the result.
//
// Which BN follows which conv is taken from the data flow, not from registration order: one
// traced forward of `example` (eval mode, no gradients) must show the BN consuming exactly that
// conv's output, used by nothing else, and the two must be siblings. Each folded conv, run on the
// input the conv saw in that forward, must reproduce the BN's output up to float rounding; a
// mismatch throws (and would be a bug). The whole model's output is not compared: rounding-level
// differences can move an activation downstream across a quantization boundary, a full step.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace qslim::quant {

// Returns the dotted names of the folded BatchNorm2D layers (empty when there was nothing to fold:
// per-tensor weight steps, or a signed weight grid whose -2^(b-1) cannot be negated, are left alone).
// Puts the model in eval mode.
std::vector<std::string> fold_converted_batch_norms(nn::Module& model, const Tensor& example);

}  // namespace qslim::quant
