// Internal: direct f32 convolution kernels with output channels in vectors ("channel vectors"),
// for groups whose output channels are a multiple of 16, any stride, padding and dilation.
//  - forward: a tile is PB output pixels of one row x CB vectors of 16 output channels; each
//    kernel tap is CB weight-vector loads and PB broadcast input pixels, CB * PB FMAs; the tile is
//    transposed to NCHW on the way out.
//  - weight gradient: a tile is the taps of CI input channels x CB vectors of output channels,
//    accumulated over every output pixel from broadcast input pixels and the output gradient
//    transposed to pixel-major rows (no horizontal sums, no im2col).
// The padded input stores each row's columns by phase (column mod stride), so that the pixels a
// tap reads for consecutive outputs are consecutive in memory for any stride.
#pragma once
#include "core/cpu/conv2d.h"

namespace qslim::cpu::chv {

bool use_forward(const Conv2dGeometry& g);
bool use_backward_weight(const Conv2dGeometry& g);
// Strided convolutions (stride 1 runs as a forward convolution, see conv2d_direct.h).
bool use_backward_input(const Conv2dGeometry& g);

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g);
void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g);
void backward_input(const float* gy, const float* w, float* gx, const Conv2dGeometry& g);

}  // namespace qslim::cpu::chv
