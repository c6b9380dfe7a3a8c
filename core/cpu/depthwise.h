// Internal: direct f32/f64 depthwise convolution (groups == in == out channels, weight [C, 1, kh, kw])
// for any stride, padding and dilation, with every kernel tap reading a contiguous run of memory:
// stride 1 works on the whole zero-padded plane as one flat run (see FlatLayout in the .cpp);
// other strides copy each padded plane into "phase" planes (phase r holds padded columns
// r, r + s, r + 2s, ...) and compute output rows a few vectors at a time.
#pragma once
#include "core/cpu/conv2d.h"

namespace qslim::cpu::depthwise {

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g);
// gx and/or gw may be null (not requested); x is needed only for gw, w only for gx.
template <typename T>
void backward(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g);

}  // namespace qslim::cpu::depthwise
