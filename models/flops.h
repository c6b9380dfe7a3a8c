// Multiply-accumulate count of a model: the MACs of every Conv2D and Linear call during one forward.
#pragma once
#include <cstdint>

#include "core/shape.h"
#include "nn/module.h"

namespace qslim::models {

// input_shape is the full input, batch included ([N, C, H, W]); a 3-d [C, H, W] means one image.
// Each Conv2D / Linear leaf is temporarily replaced (replace_submodule) by a wrapper that records
// its output shape during one no-grad, eval-mode forward of a zero input; the original modules,
// training flags and running statistics are restored afterwards, also when the forward throws.
// Conv2D: out_elements * (in_channels / groups) * kh * kw. Linear: out_elements * in_features.
int64_t count_macs(nn::Module& model, const Shape& input_shape);

}  // namespace qslim::models
