// Non-differentiable elementwise math kernels (forward passes of the unary arithmetic ops).
// Outputs are new contiguous tensors; f32/f64 contiguous inputs take vectorised loops (Eigen
// packet math for the transcendental functions).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace qslim::cpu {

enum class UnaryOp : uint8_t { Neg, Abs, Sign, Exp, Log, Sqrt, Round };

const char* unary_op_name(UnaryOp op);

// Neg, Abs and Sign accept every dtype; Exp, Log, Sqrt and Round (half to even) need f32/f64.
Tensor unary(const Tensor& x, UnaryOp op);
Tensor pow_scalar(const Tensor& x, double exponent);  // f32/f64
// Every dtype; for integer tensors the bounds are rounded inward to representable values.
Tensor clamp(const Tensor& x, double lo, double hi);
// Elementwise max/min with broadcasting; NaN in either operand propagates.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

}  // namespace qslim::cpu
