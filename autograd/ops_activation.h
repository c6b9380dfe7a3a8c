// Differentiable activations (PyTorch definitions: hardswish x*relu6(x+3)/6, hardsigmoid
// relu6(x+3)/6, gelu exact erf form unless approximate_tanh). f32/f64 only. Derivatives at the kinks
// follow PyTorch too: relu 0 at 0, relu6 nonzero only on (0, 6), leaky_relu takes the slope at 0,
// hardsigmoid 1/6 on (-3, 3), hardswish (2x+3)/6 on [-3, 3], 0 below and 1 above.
#pragma once
#include "core/tensor.h"

namespace qslim {

Tensor relu(const Tensor& x);
Tensor& relu_(Tensor& x);  // in place, tracked
Tensor relu6(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor hardswish(const Tensor& x);
Tensor hardsigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x, bool approximate_tanh = false);

}  // namespace qslim
