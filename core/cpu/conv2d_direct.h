// Internal: direct f32 kernels for stride-1 convolutions, without im2col. Each output row is
// computed 16 pixels per vector from a zero-padded copy of the input, with a block of output
// channels accumulating in registers (weights broadcast from a packed copy); rows too narrow for
// that, with output channels in multiples of 16, use vectors of 16 channels per pixel instead
// (conv2d_chv.h takes those shapes whenever they have enough input channels). The input gradient
// is a forward convolution of the padded output gradient with flipped, transposed weights (run by
// conv2d_chv.h where it applies); the weight gradient accumulates gradient-row x shifted-input-row
// products in registers across images.
#pragma once
#include "core/cpu/conv2d.h"

namespace qslim::cpu::direct {

// Whether the direct kernels apply (stride 1, rows that fill vectors well enough, ...).
bool use_forward(const Conv2dGeometry& g);
bool use_backward_input(const Conv2dGeometry& g);
bool use_backward_weight(const Conv2dGeometry& g);

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g);
void backward_input(const float* gy, const float* w, float* gx, const Conv2dGeometry& g);
void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g);

}  // namespace qslim::cpu::direct
