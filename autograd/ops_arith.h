// Differentiable arithmetic: broadcasting binary ops, scalar ops, unary math. Binary ops require
// equal dtypes (no implicit promotion) and broadcast like NumPy; errors name both shapes.
// add/sub/mul (tensor or integral scalar), neg, abs, sign, clamp, maximum and minimum also take
// integer tensors; div, exp, log, pow, sqrt and round need f32/f64.
#pragma once
#include "core/tensor.h"

namespace qslim {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
// NaN passes through; gradient 1 where lo <= x <= hi (PyTorch's convention), 0 outside.
Tensor clamp(const Tensor& a, double lo, double hi);
Tensor sign(const Tensor& a);   // zero gradient
Tensor round(const Tensor& a);  // half to even; zero gradient
// NaN propagates; on ties the gradient is split evenly between a and b (as in PyTorch).
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

// In-place variants: write into a (and its views), record the op in a's history. They throw when
// a is a leaf that requires grad (as PyTorch does) unless grad mode is off. Only a's own history
// is rebased: a view's base keeps its old grad_fn.
Tensor& add_(Tensor& a, const Tensor& b);
Tensor& sub_(Tensor& a, const Tensor& b);
Tensor& mul_(Tensor& a, const Tensor& b);
Tensor& div_(Tensor& a, const Tensor& b);
Tensor& mul_(Tensor& a, double s);
Tensor& add_(Tensor& a, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return add(neg(a), s); }

}  // namespace qslim
