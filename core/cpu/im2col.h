// Internal: the image <-> column-matrix transforms of the GEMM convolution path. One image
// [C, H, W] maps to columns [C*kh*kw, OH*OW] (row (c, i, j) holds input pixel (c, oh*s + i*d - p,
// ow*s + j*d - p) for every output pixel, zero where that falls in the padding).
#pragma once
#include <cstdint>

#include "core/cpu/conv2d.h"

namespace qslim::cpu {

// Entries of the column buffer and of the padded-image scratch the transforms need (both carry
// slack for whole-vector copies).
template <typename T>
int64_t im2col_columns_size(const Conv2dGeometry& g);
template <typename T>
int64_t im2col_scratch_size(const Conv2dGeometry& g);

// `scratch` must be zeroed before the first call with a geometry and kept for later calls with
// it (only the image interior is rewritten).
template <typename T>
void im2col(const T* x, const Conv2dGeometry& g, T* scratch, T* cols);
// x (one image, fully overwritten) = the sum of the columns back onto their pixels; any scratch.
template <typename T>
void col2im(const T* cols, const Conv2dGeometry& g, T* scratch, T* x);

}  // namespace qslim::cpu
