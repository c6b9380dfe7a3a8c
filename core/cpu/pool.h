// 2-D pooling kernels, NCHW: max pool (with argmax indices for backward), average pool and
// adaptive average pool, forward and backward. Parallel over (n, c) planes when large enough.
#pragma once
#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace qslim::cpu {

struct Pool2dGeometry {
  int64_t batch = 0, channels = 0, in_h = 0, in_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t out_h = 0, out_w = 0;
};

// Validates input [N, C, H, W] and the window arguments (stride 0 means stride = kernel; padding
// at most half the kernel) and computes the output size (floor mode). Errors name `op`.
Pool2dGeometry pool2d_geometry(const char* op, const Shape& input, std::array<int64_t, 2> kernel,
                               std::array<int64_t, 2> stride, std::array<int64_t, 2> padding);

struct MaxPool2dResult {
  Tensor output;
  Tensor indices;  // i32, same shape as output: argmax as h * W + w within its input plane
};
// NaN propagates (a NaN in the window is the maximum). indices are produced only when asked.
MaxPool2dResult max_pool2d_forward(const Tensor& x, const Pool2dGeometry& g, bool with_indices);
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Pool2dGeometry& g);

// count_include_pad: divide by the full window (padding counted) instead of the valid elements.
Tensor avg_pool2d_forward(const Tensor& x, const Pool2dGeometry& g, bool count_include_pad);
Tensor avg_pool2d_backward(const Tensor& grad_out, const Pool2dGeometry& g, bool count_include_pad);

// Output cell o along an axis of size `in` averages [floor(o*in/out), ceil((o+1)*in/out)).
Tensor adaptive_avg_pool2d_forward(const Tensor& x, std::array<int64_t, 2> output_size);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape);

}  // namespace qslim::cpu
