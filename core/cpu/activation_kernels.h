// Non-differentiable activation kernels (forward and backward math, PyTorch's definitions), shared by
// the differentiable activations and by layers that fuse an activation into their output pass.
// f32/f64 only; contiguous loops are vectorised (Eigen packet math for exp/tanh).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace qslim::cpu {

enum class Activation : uint8_t {
  Relu,
  Relu6,
  LeakyRelu,    // param: negative slope
  Sigmoid,
  Tanh,
  Hardswish,    // x * relu6(x + 3) / 6
  Hardsigmoid,  // relu6(x + 3) / 6
  Silu,         // x * sigmoid(x)
  Gelu,         // x * Phi(x), exact erf form
  GeluTanh,     // tanh approximation
};

const char* activation_name(Activation act);

// Backward of Relu, Sigmoid and Tanh is computed from the output; of the others from the input.
bool activation_backward_uses_output(Activation act);

// y = act(x) as a new contiguous tensor.
Tensor activation_forward(const Tensor& x, Activation act, double param = 0.0);
// x = act(x) in place (x may be any non-overlapping view); bumps x's version.
void activation_forward_inplace(const Tensor& x, Activation act, double param = 0.0);
// Raw contiguous buffers for fused kernels: y[i] = act(x[i]); y may equal x. Single-threaded.
void activation_apply(const float* x, float* y, int64_t n, Activation act, double param = 0.0);
void activation_apply(const double* x, double* y, int64_t n, Activation act, double param = 0.0);

// dL/dx = grad * act'(.), where `saved` is the output for activation_backward_uses_output(act) and
// the input otherwise. grad and saved have the same shape.
Tensor activation_backward(const Tensor& grad, const Tensor& saved, Activation act, double param = 0.0);
// The same, written into `grad` (contiguous), for a gradient buffer nobody else holds.
void activation_backward_inplace(const Tensor& grad, const Tensor& saved, Activation act, double param = 0.0);

}  // namespace qslim::cpu
