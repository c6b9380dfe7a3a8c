// Internal: f32 depthwise convolution on channel blocks (AVX-512). Each block of 16 channels of an
// image is transposed in registers to pixel-major vectors ([pixel][16 channels], zero-padded
// border), so every output pixel is one vector and every kernel tap one FMA for any stride,
// padding and dilation, with no lanes wasted on narrow or strided rows; results are transposed
// back to NCHW. Weight gradients accumulate per (block, tap) vector over all output pixels; input
// gradients scatter-add into a padded block. A last block of fewer than 16 channels runs with
// zero lanes.
#pragma once
#include "core/cpu/conv2d.h"

namespace qslim::cpu::depthwise_blocked {

// Whether these kernels are compiled in (AVX-512) and beat depthwise.h on this geometry, per pass.
bool use_forward(const Conv2dGeometry& g);
bool use_backward_weight(const Conv2dGeometry& g);
bool use_backward_input(const Conv2dGeometry& g);

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g);
// gx and/or gw may be null (not requested); x is needed only for gw, w only for gx.
void backward(const float* gy, const float* x, const float* w, float* gx, float* gw, const Conv2dGeometry& g);

}  // namespace qslim::cpu::depthwise_blocked
