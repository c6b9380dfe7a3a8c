#include "core/cpu/conv2d.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/conv2d_chv.h"
#include "core/cpu/conv2d_direct.h"
#include "core/cpu/depthwise.h"
#include "core/cpu/depthwise_blocked.h"
#include "core/cpu/gemm.h"
#include "core/cpu/im2col.h"
#include "core/cpu/scratch.h"
#include "core/cpu/winograd.h"
#include "core/factory.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

template <typename T>
void forward_gemm(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t Kg = Cg * g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const bool pointwise = g.pointwise();
  const int64_t chunks = batch_chunks(g.batch, 2.0 * g.out_channels * P * Kg);
  run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
    T* cols = pointwise ? nullptr : thread_scratch<T>(ScratchSlot::Columns, im2col_columns_size<T>(g));
    T* pad = pointwise ? nullptr : thread_scratch<T>(ScratchSlot::Plane, im2col_scratch_size<T>(g));
    if (pad) std::fill(pad, pad + im2col_scratch_size<T>(g), T(0));
    for (int64_t b = b0; b < b1; ++b) {
      const T* src = x + b * g.in_channels * HW;
      if (!pointwise) {
        im2col(src, g, pad, cols);
        src = cols;
      }
      T* yb = y + b * g.out_channels * P;
      if (bias)
        for (int64_t o = 0; o < g.out_channels; ++o) std::fill(yb + o * P, yb + (o + 1) * P, bias[o]);
      for (int64_t grp = 0; grp < G; ++grp)
        gemm(false, false, Og, P, Kg, T(1), w + grp * Og * Kg, Kg, src + grp * Kg * P, P, bias ? T(1) : T(0),
             yb + grp * Og * P, P);
    }
  });
}

// The weight gradient is accumulated transposed, dW^T [Kg, Og] += columns [Kg, P] x gy^T: that
// way Eigen packs the large column matrix in its cheap (non-transposing) direction.
template <typename T>
void backward_gemm(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t Kg = Cg * g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const int64_t wsize = g.out_channels * Kg;
  const bool pointwise = g.pointwise();
  const int64_t chunks = batch_chunks(g.batch, 2.0 * g.out_channels * P * Kg * ((gx ? 1 : 0) + (gw ? 1 : 0)));
  // One transposed accumulator per chunk, summed and transposed into gw at the end.
  Tensor acc_t;
  if (gw) acc_t = zeros({chunks, wsize}, dtype_of<T>::value);
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    T* acc = gw ? acc_t.data<T>() + chunk * wsize : nullptr;
    const int64_t cols_size = im2col_columns_size<T>(g), scratch_size = im2col_scratch_size<T>(g);
    T* cols = (!pointwise && gw) ? thread_scratch<T>(ScratchSlot::Columns, cols_size) : nullptr;
    T* dcols = (!pointwise && gx) ? thread_scratch<T>(ScratchSlot::GradColumns, cols_size) : nullptr;
    T* pad = (!pointwise && gw) ? thread_scratch<T>(ScratchSlot::Plane, scratch_size) : nullptr;
    T* gpad = (!pointwise && gx) ? thread_scratch<T>(ScratchSlot::GradPlane, scratch_size) : nullptr;
    if (pad) std::fill(pad, pad + scratch_size, T(0));
    for (int64_t b = b0; b < b1; ++b) {
      const T* gyb = gy + b * g.out_channels * P;
      if (gw) {
        const T* src = x + b * g.in_channels * HW;
        if (!pointwise) {
          im2col(src, g, pad, cols);
          src = cols;
        }
        for (int64_t grp = 0; grp < G; ++grp)
          gemm(false, true, Kg, Og, P, T(1), src + grp * Kg * P, P, gyb + grp * Og * P, P, T(1), acc + grp * Kg * Og,
               Og);
      }
      if (gx) {
        T* gxb = gx + b * g.in_channels * HW;
        T* dst = pointwise ? gxb : dcols;
        for (int64_t grp = 0; grp < G; ++grp)
          gemm(true, false, Kg, P, Og, T(1), w + grp * Og * Kg, Kg, gyb + grp * Og * P, P, T(0), dst + grp * Kg * P, P);
        if (!pointwise) col2im(dcols, g, gpad, gxb);
      }
    }
  });
  if (gw) {
    const T* a = acc_t.data<T>();
    for (int64_t grp = 0; grp < G; ++grp)
      for (int64_t o = 0; o < Og; ++o)
        for (int64_t k = 0; k < Kg; ++k) {
          T s = 0;
          for (int64_t c = 0; c < chunks; ++c) s += a[c * wsize + (grp * Kg + k) * Og + o];
          gw[(grp * Og + o) * Kg + k] = s;
        }
  }
}

// The direct weight gradient splits the batch over threads; a few large images instead go to
// the GEMM path, whose GEMMs thread.
bool direct_weight_grad(const Conv2dGeometry& g) {
  if (!direct::use_backward_weight(g)) return false;
  const double flops = 2.0 * g.out_channels * (g.in_channels / g.groups) * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  return batch_chunks(g.batch, flops) > 1 || pool_threads() == 1 || g.batch * flops < kMinParallelFlops;
}

// f32 only: runs the Winograd, channel-vector or direct kernels where they apply (winograd.h,
// conv2d_chv.h, conv2d_direct.h).
bool direct_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  if (winograd::applies(g)) {
    winograd::forward(x, w, bias, y, g);
    return true;
  }
  if (chv::use_forward(g)) {
    chv::forward(x, w, bias, y, g);
    return true;
  }
  if (!direct::use_forward(g)) return false;
  direct::forward(x, w, bias, y, g);
  return true;
}
bool direct_forward(const double*, const double*, const double*, double*, const Conv2dGeometry&) { return false; }

// Computes the gradients the direct kernels handle and clears their pointers.
void direct_backward(const float* gy, const float* x, const float* w, float*& gx, float*& gw,
                     const Conv2dGeometry& g) {
  if (gx && chv::use_backward_input(g)) {
    chv::backward_input(gy, w, gx, g);
    gx = nullptr;
  }
  if (gx && direct::use_backward_input(g)) {
    direct::backward_input(gy, w, gx, g);
    gx = nullptr;
  }
  if (gw && winograd::applies(g)) {
    winograd::backward_weight(gy, x, gw, g);
    gw = nullptr;
  }
  if (gw && chv::use_backward_weight(g)) {
    chv::backward_weight(gy, x, gw, g);
    gw = nullptr;
  }
  if (gw && direct_weight_grad(g)) {
    direct::backward_weight(gy, x, gw, g);
    gw = nullptr;
  }
}
void direct_backward(const double*, const double*, const double*, double*&, double*&, const Conv2dGeometry&) {}

// Depthwise: f32 planes small enough for channel blocks take depthwise_blocked.h; the rest the
// row-vector kernels of depthwise.h.
template <typename T>
void depthwise_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (depthwise_blocked::use_forward(g)) return depthwise_blocked::forward(x, w, bias, y, g);
  }
  depthwise::forward(x, w, bias, y, g);
}

// One blocked pass computes both gradients when both take the blocked kernels (sharing the
// transposed output gradient).
template <typename T>
void depthwise_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  if constexpr (std::is_same_v<T, float>) {
    float* bx = gx && depthwise_blocked::use_backward_input(g) ? gx : nullptr;
    float* bw = gw && depthwise_blocked::use_backward_weight(g) ? gw : nullptr;
    if (bx || bw) depthwise_blocked::backward(gy, x, w, bx, bw, g);
    if (bx) gx = nullptr;
    if (bw) gw = nullptr;
  }
  depthwise::backward(gy, x, w, gx, gw, g);
}

template <typename T>
void bias_grad(const T* gy, const Conv2dGeometry& g, T* gb) {
  const int64_t O = g.out_channels, P = g.out_h * g.out_w;
  for (int64_t o = 0; o < O; ++o) {
    double acc = 0;
    for (int64_t n = 0; n < g.batch; ++n) {
      const T* r = gy + (n * O + o) * P;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < P; ++i) s += r[i];
      acc += s;
    }
    gb[o] = static_cast<T>(acc);
  }
}

}  // namespace

Conv2dGeometry conv2d_geometry(const Shape& input, const Shape& weight, std::array<int64_t, 2> stride,
                               std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t groups) {
  QSLIM_CHECK(input.size() == 4, "conv2d: expected input [N, C, H, W], got ", shape_str(input));
  QSLIM_CHECK(weight.size() == 4, "conv2d: expected weight [out, in/groups, kh, kw], got ", shape_str(weight));
  QSLIM_CHECK(groups >= 1, "conv2d: groups must be positive, got ", groups);
  for (int i = 0; i < 2; ++i) {
    QSLIM_CHECK(stride[i] >= 1, "conv2d: stride must be positive, got [", stride[0], ", ", stride[1], "]");
    QSLIM_CHECK(dilation[i] >= 1, "conv2d: dilation must be positive, got [", dilation[0], ", ", dilation[1], "]");
    QSLIM_CHECK(padding[i] >= 0, "conv2d: padding must be non-negative, got [", padding[0], ", ", padding[1], "]");
  }
  Conv2dGeometry g;
  g.batch = input[0];
  g.in_channels = input[1];
  g.in_h = input[2];
  g.in_w = input[3];
  g.out_channels = weight[0];
  g.kernel_h = weight[2];
  g.kernel_w = weight[3];
  QSLIM_CHECK(g.out_channels >= 1 && g.kernel_h >= 1 && g.kernel_w >= 1, "conv2d: weight ", shape_str(weight),
              " has an empty dimension");
  QSLIM_CHECK(g.in_channels % groups == 0, "conv2d: groups ", groups, " does not divide the ", g.in_channels,
              " input channels of input ", shape_str(input));
  QSLIM_CHECK(g.out_channels % groups == 0, "conv2d: groups ", groups, " does not divide the ", g.out_channels,
              " output channels of weight ", shape_str(weight));
  QSLIM_CHECK(weight[1] * groups == g.in_channels, "conv2d: input ", shape_str(input), " has ", g.in_channels,
              " channels but weight ", shape_str(weight), " expects ", weight[1] * groups,
              groups > 1 ? detail::concat(" (", weight[1], " per group x ", groups, " groups)") : std::string());
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;
  const int64_t ekh = (g.kernel_h - 1) * g.dilation_h + 1, ekw = (g.kernel_w - 1) * g.dilation_w + 1;
  QSLIM_CHECK(ekh <= g.in_h + 2 * g.pad_h && ekw <= g.in_w + 2 * g.pad_w, "conv2d: kernel ", ekh, "x", ekw,
              " (weight ", shape_str(weight), ", dilation [", g.dilation_h, ", ", g.dilation_w,
              "]) is larger than the padded input ", g.in_h + 2 * g.pad_h, "x", g.in_w + 2 * g.pad_w, " (input ",
              shape_str(input), ", padding [", g.pad_h, ", ", g.pad_w, "])");
  g.out_h = (g.in_h + 2 * g.pad_h - ekh) / g.stride_h + 1;
  g.out_w = (g.in_w + 2 * g.pad_w - ekw) / g.stride_w + 1;
  return g;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dGeometry& g) {
  QSLIM_CHECK(x.dtype() == weight.dtype(), "conv2d: input dtype ", dtype_name(x.dtype()), " differs from weight dtype ",
              dtype_name(weight.dtype()));
  if (bias.defined()) {
    QSLIM_CHECK(bias.shape() == Shape{g.out_channels}, "conv2d: bias ", shape_str(bias.shape()),
                " does not match the ", g.out_channels, " output channels of weight ", shape_str(weight.shape()));
    QSLIM_CHECK(bias.dtype() == x.dtype(), "conv2d: bias dtype ", dtype_name(bias.dtype()), " differs from input dtype ",
                dtype_name(x.dtype()));
  }
  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.defined() ? bias.contiguous() : Tensor();
  Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype());
  QSLIM_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] {
    const scalar_t* b = bc.defined() ? bc.data<scalar_t>() : nullptr;
    if (g.depthwise())
      depthwise_forward(xc.data<scalar_t>(), wc.data<scalar_t>(), b, y.data<scalar_t>(), g);
    else if (!direct_forward(xc.data<scalar_t>(), wc.data<scalar_t>(), b, y.data<scalar_t>(), g))
      forward_gemm(xc.data<scalar_t>(), wc.data<scalar_t>(), b, y.data<scalar_t>(), g);
  });
  return y;
}

Conv2dGrads conv2d_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Conv2dGeometry& g,
                            bool need_input, bool need_weight, bool need_bias) {
  const Shape out_shape{g.batch, g.out_channels, g.out_h, g.out_w};
  QSLIM_CHECK(grad_out.shape() == out_shape, "conv2d backward: gradient ", shape_str(grad_out.shape()),
              " does not match the output ", shape_str(out_shape));
  QSLIM_CHECK(!need_input || weight.defined(), "conv2d backward: the input gradient needs the weight");
  QSLIM_CHECK(!need_weight || x.defined(), "conv2d backward: the weight gradient needs the input");
  const DType dt = grad_out.dtype();
  Conv2dGrads r;
  Tensor gy = grad_out.contiguous();
  Tensor xc = need_weight ? x.contiguous() : Tensor(), wc = need_input ? weight.contiguous() : Tensor();
  if (need_input) r.input = Tensor::empty({g.batch, g.in_channels, g.in_h, g.in_w}, dt);
  if (need_weight) r.weight = Tensor::empty({g.out_channels, g.in_channels / g.groups, g.kernel_h, g.kernel_w}, dt);
  if (need_bias) r.bias = Tensor::empty({g.out_channels}, dt);
  QSLIM_DISPATCH_FLOAT(dt, "conv2d backward", [&] {
    scalar_t* gx = need_input ? r.input.data<scalar_t>() : nullptr;
    scalar_t* gw = need_weight ? r.weight.data<scalar_t>() : nullptr;
    const scalar_t* xp = need_weight ? xc.data<scalar_t>() : nullptr;
    const scalar_t* wp = need_input ? wc.data<scalar_t>() : nullptr;
    if (g.depthwise()) {
      depthwise_backward(gy.data<scalar_t>(), xp, wp, gx, gw, g);
    } else {
      direct_backward(gy.data<scalar_t>(), xp, wp, gx, gw, g);
      if (gx || gw) backward_gemm(gy.data<scalar_t>(), xp, wp, gx, gw, g);
    }
    if (need_bias) bias_grad(gy.data<scalar_t>(), g, r.bias.data<scalar_t>());
  });
  return r;
}

}  // namespace qslim::cpu
