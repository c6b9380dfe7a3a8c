// 2-D convolution kernels, NCHW, weight [out, in/groups, kh, kw]. Per shape and dtype:
//  - depthwise (groups == in == out channels): direct vectorised loops (depthwise.h), or for f32
//    strided or small planes, 16-channel blocks transposed to pixel-major vectors
//    (depthwise_blocked.h);
//  - f32 3x3 stride-1 convs with 16/32/64 input channels (and output channels in multiples of
//    16), with a few images per thread: Winograd F(2x2, 3x3) for all three passes (winograd.h);
//  - f32 convs with output channels per group in multiples of 16 (any stride): channel-vector
//    kernels for the forward pass, the weight gradient and strided input gradients
//    (conv2d_chv.h);
//  - other f32 stride-1 convs whose output rows fill vectors: direct register-blocked kernels
//    (conv2d_direct.h), each pass only where it beats the GEMM path;
//  - everything else: im2col + GEMM (im2col.h, gemm.h); 1x1 stride-1 unpadded convs skip im2col
//    since the input plane already is the column matrix.
// Threading (batch_parallel.h): batch chunks in parallel with single-threaded GEMMs, or one
// threaded GEMM per image when the batch is too small to split evenly; never both.
#pragma once
#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace qslim::cpu {

struct Conv2dGeometry {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t out_h = 0, out_w = 0;

  bool depthwise() const { return groups > 1 && groups == in_channels && groups == out_channels; }
  bool pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
};

// Validates an input [N, C, H, W] against a weight [O, C/groups, kh, kw] and the arguments, and
// computes the output size. Errors name "conv2d" and the offending shapes.
Conv2dGeometry conv2d_geometry(const Shape& input, const Shape& weight, std::array<int64_t, 2> stride,
                               std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t groups);

// y [N, O, OH, OW] = conv(x, weight) + bias; bias [O] may be undefined. All operands share one
// floating dtype; non-contiguous operands are copied.
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dGeometry& g);

// Gradients of the requested operands (the others stay undefined). x is needed only for the weight
// gradient and weight only for the input gradient; either may be undefined when not needed.
struct Conv2dGrads {
  Tensor input, weight, bias;  // undefined unless requested
};
Conv2dGrads conv2d_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Conv2dGeometry& g,
                            bool need_input, bool need_weight, bool need_bias);

}  // namespace qslim::cpu
