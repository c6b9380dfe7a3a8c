// Internal: f32 3x3 stride-1 convolution by Winograd F(2x2, 3x3) (AVX-512): each 2x2 output tile
// comes from a 4x4 input patch through 16 element-wise products in the transformed domain, 16
// multiply-adds per (input, output channel) pair instead of 36. Per image, the input is moved to
// pixel-major vectors of 16 channels (in-register transposes), transformed per tile, multiplied by
// the transformed weights in 16 small GEMMs (tiles x input channels x output channels, output
// channels in vectors), transformed back and transposed to NCHW.
// Used for the forward pass, with flipped transposed weights for the input gradient, and for the
// weight gradient.
#pragma once
#include "core/cpu/conv2d.h"

namespace qslim::cpu::winograd {

// Compiled in (AVX-512), 3x3, stride 1, no dilation, one group, channel counts that the GEMM
// kernels are instantiated for (16, 32 or 64 inputs; outputs in multiples of 16), and at least
// two images per thread.
bool applies(const Conv2dGeometry& g);

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g);
// The weight gradient through the same transforms: dW = G^T (sum over tiles of V x (A dY A^T)) G.
void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g);

}  // namespace qslim::cpu::winograd
