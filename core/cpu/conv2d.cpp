#include "core/cpu/conv2d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/conv2d_direct.h"
#include "core/cpu/gemm.h"
#include "core/cpu/scratch.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

// Output columns ow whose input column ow*stride - pad + offset lies in [0, width): [lo, hi).
inline void valid_range(int64_t out, int64_t stride, int64_t pad, int64_t offset, int64_t width, int64_t& lo,
                        int64_t& hi) {
  const int64_t start = pad - offset;  // ow*stride >= start
  lo = start > 0 ? (start + stride - 1) / stride : 0;
  const int64_t lim = width + pad - offset;  // ow*stride < lim
  hi = lim > 0 ? std::min(out, (lim + stride - 1) / stride) : 0;
  lo = std::min(lo, out);
  hi = std::max(hi, lo);
}

// One image [C, H, W] -> columns [C*KH*KW, OH*OW].
template <typename T>
void im2col(const T* x, const Conv2dGeometry& g, T* cols) {
  const int64_t H = g.in_h, W = g.in_w, OH = g.out_h, OW = g.out_w, P = OH * OW;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    const T* xc = x + c * H * W;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        T* row = cols + ((c * g.kernel_h + kh) * g.kernel_w + kw) * P;
        int64_t lo, hi;
        valid_range(OW, g.stride_w, g.pad_w, kw * g.dilation_w, W, lo, hi);
        const int64_t iw0 = lo * g.stride_w - g.pad_w + kw * g.dilation_w;
        for (int64_t oh = 0; oh < OH; ++oh) {
          T* r = row + oh * OW;
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih < 0 || ih >= H) {
            std::fill(r, r + OW, T(0));
            continue;
          }
          std::fill(r, r + lo, T(0));
          std::fill(r + hi, r + OW, T(0));
          const T* src = xc + ih * W + iw0;
          if (g.stride_w == 1) {
            std::memcpy(r + lo, src, (hi - lo) * sizeof(T));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = src[(ow - lo) * g.stride_w];
          }
        }
      }
    }
  }
}

// Adds columns [C*KH*KW, OH*OW] back into one image [C, H, W] (which the caller zeroed).
template <typename T>
void col2im(const T* cols, const Conv2dGeometry& g, T* x) {
  const int64_t H = g.in_h, W = g.in_w, OH = g.out_h, OW = g.out_w, P = OH * OW;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    T* xc = x + c * H * W;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const T* row = cols + ((c * g.kernel_h + kh) * g.kernel_w + kw) * P;
        int64_t lo, hi;
        valid_range(OW, g.stride_w, g.pad_w, kw * g.dilation_w, W, lo, hi);
        const int64_t iw0 = lo * g.stride_w - g.pad_w + kw * g.dilation_w;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih < 0 || ih >= H) continue;
          const T* r = row + oh * OW;
          T* dst = xc + ih * W + iw0;
          if (g.stride_w == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow - lo] += r[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[(ow - lo) * g.stride_w] += r[ow];
          }
        }
      }
    }
  }
}

template <typename T>
void forward_gemm(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t Kg = Cg * g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const bool pointwise = g.pointwise();
  const int64_t chunks = batch_chunks(g.batch, 2.0 * g.out_channels * P * Kg);
  run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
    T* cols = pointwise ? nullptr : thread_scratch<T>(ScratchSlot::Columns, G * Kg * P);
    for (int64_t b = b0; b < b1; ++b) {
      const T* src = x + b * g.in_channels * HW;
      if (!pointwise) {
        im2col(src, g, cols);
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

template <typename T>
void backward_gemm(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t Kg = Cg * g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const int64_t wsize = g.out_channels * Kg;
  const bool pointwise = g.pointwise();
  const int64_t chunks = batch_chunks(g.batch, 2.0 * g.out_channels * P * Kg * ((gx ? 1 : 0) + (gw ? 1 : 0)));
  // Each chunk accumulates its weight gradient separately (chunk 0 straight into gw), summed after.
  Tensor partial;
  if (gw) {
    std::fill(gw, gw + wsize, T(0));
    if (chunks > 1) partial = Tensor::empty({chunks - 1, wsize}, dtype_of<T>::value);
  }
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    T* acc = nullptr;
    if (gw) {
      acc = chunk == 0 ? gw : partial.data<T>() + (chunk - 1) * wsize;
      if (chunk > 0) std::fill(acc, acc + wsize, T(0));
    }
    T* cols = (!pointwise && gw) ? thread_scratch<T>(ScratchSlot::Columns, G * Kg * P) : nullptr;
    T* dcols = (!pointwise && gx) ? thread_scratch<T>(ScratchSlot::GradColumns, G * Kg * P) : nullptr;
    for (int64_t b = b0; b < b1; ++b) {
      const T* gyb = gy + b * g.out_channels * P;
      if (gw) {
        const T* src = x + b * g.in_channels * HW;
        if (!pointwise) {
          im2col(src, g, cols);
          src = cols;
        }
        for (int64_t grp = 0; grp < G; ++grp)
          gemm(false, true, Og, Kg, P, T(1), gyb + grp * Og * P, P, src + grp * Kg * P, P, T(1), acc + grp * Og * Kg,
               Kg);
      }
      if (gx) {
        T* gxb = gx + b * g.in_channels * HW;
        T* dst = pointwise ? gxb : dcols;
        for (int64_t grp = 0; grp < G; ++grp)
          gemm(true, false, Kg, P, Og, T(1), w + grp * Og * Kg, Kg, gyb + grp * Og * P, P, T(0), dst + grp * Kg * P, P);
        if (!pointwise) {
          std::fill(gxb, gxb + g.in_channels * HW, T(0));
          col2im(dcols, g, gxb);
        }
      }
    }
  });
  if (gw && chunks > 1) {
    const T* p = partial.data<T>();
    for (int64_t c = 0; c < chunks - 1; ++c)
#pragma omp simd
      for (int64_t i = 0; i < wsize; ++i) gw[i] += p[c * wsize + i];
  }
}

// Copies plane [H, W] into the interior of a zero-bordered [H+2ph, W+2pw] buffer.
template <typename T>
void pad_plane(const T* src, const Conv2dGeometry& g, T* dst) {
  const int64_t Wp = g.in_w + 2 * g.pad_w;
  for (int64_t h = 0; h < g.in_h; ++h)
    std::memcpy(dst + (h + g.pad_h) * Wp + g.pad_w, src + h * g.in_w, g.in_w * sizeof(T));
}

template <typename T>
void depthwise_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, HW = g.in_h * g.in_w, OW = g.out_w, P = g.out_h * OW;
  const int64_t KH = g.kernel_h, KW = g.kernel_w, sw = g.stride_w;
  const bool padded = g.pad_h > 0 || g.pad_w > 0;
  const int64_t Wp = g.in_w + 2 * g.pad_w, Hp = g.in_h + 2 * g.pad_h;
  const int64_t ld = padded ? Wp : g.in_w;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, P * KH * KW));
  parallel_for(g.batch * C, grain, [&](int64_t p0, int64_t p1) {
    T* pad = padded ? thread_scratch<T>(ScratchSlot::Plane, Hp * Wp) : nullptr;
    if (padded) std::fill(pad, pad + Hp * Wp, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % C;
      const T* src = x + p * HW;
      if (padded) {
        pad_plane(src, g, pad);
        src = pad;
      }
      const T* wc = w + c * KH * KW;
      const T bv = bias ? bias[c] : T(0);
      T* yp = y + p * P;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        T* yr = yp + oh * OW;
        std::fill(yr, yr + OW, bv);
        for (int64_t kh = 0; kh < KH; ++kh) {
          const T* ir = src + (oh * g.stride_h + kh * g.dilation_h) * ld;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const T wv = wc[kh * KW + kw];
            const T* s = ir + kw * g.dilation_w;
            if (sw == 1) {
#pragma omp simd
              for (int64_t ow = 0; ow < OW; ++ow) yr[ow] += wv * s[ow];
            } else {
              for (int64_t ow = 0; ow < OW; ++ow) yr[ow] += wv * s[ow * sw];
            }
          }
        }
      }
    }
  });
}

// Parallel over channels, so each thread owns its channels' weight gradients.
template <typename T>
void depthwise_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, H = g.in_h, W = g.in_w, HW = H * W, OW = g.out_w, P = g.out_h * OW;
  const int64_t KH = g.kernel_h, KW = g.kernel_w, sw = g.stride_w;
  const bool padded = g.pad_h > 0 || g.pad_w > 0;
  const int64_t Wp = W + 2 * g.pad_w, Hp = H + 2 * g.pad_h;
  const int64_t ld = padded ? Wp : W;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.batch * P * KH * KW));
  parallel_for(C, grain, [&](int64_t c0, int64_t c1) {
    T* pad = (padded && gw) ? thread_scratch<T>(ScratchSlot::Plane, Hp * Wp) : nullptr;
    T* gpad = (padded && gx) ? thread_scratch<T>(ScratchSlot::GradPlane, Hp * Wp) : nullptr;
    if (pad) std::fill(pad, pad + Hp * Wp, T(0));
    std::vector<T> wacc(KH * KW);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(wacc.begin(), wacc.end(), T(0));
      const T* wc = w ? w + c * KH * KW : nullptr;
      for (int64_t n = 0; n < g.batch; ++n) {
        const int64_t p = n * C + c;
        const T* gyp = gy + p * P;
        if (gw) {
          const T* src = x + p * HW;
          if (padded) {
            pad_plane(src, g, pad);
            src = pad;
          }
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              T s = 0;
              for (int64_t oh = 0; oh < g.out_h; ++oh) {
                const T* ir = src + (oh * g.stride_h + kh * g.dilation_h) * ld + kw * g.dilation_w;
                const T* gr = gyp + oh * OW;
                if (sw == 1) {
#pragma omp simd reduction(+ : s)
                  for (int64_t ow = 0; ow < OW; ++ow) s += gr[ow] * ir[ow];
                } else {
                  for (int64_t ow = 0; ow < OW; ++ow) s += gr[ow] * ir[ow * sw];
                }
              }
              wacc[kh * KW + kw] += s;
            }
        }
        if (gx) {
          T* gxp = gx + p * HW;
          T* dst = padded ? gpad : gxp;
          std::fill(dst, dst + (padded ? Hp * Wp : HW), T(0));
          for (int64_t oh = 0; oh < g.out_h; ++oh) {
            const T* gr = gyp + oh * OW;
            for (int64_t kh = 0; kh < KH; ++kh) {
              T* tr = dst + (oh * g.stride_h + kh * g.dilation_h) * ld;
              for (int64_t kw = 0; kw < KW; ++kw) {
                const T wv = wc[kh * KW + kw];
                T* t = tr + kw * g.dilation_w;
                if (sw == 1) {
#pragma omp simd
                  for (int64_t ow = 0; ow < OW; ++ow) t[ow] += wv * gr[ow];
                } else {
                  for (int64_t ow = 0; ow < OW; ++ow) t[ow * sw] += wv * gr[ow];
                }
              }
            }
          }
          if (padded)
            for (int64_t h = 0; h < H; ++h)
              std::memcpy(gxp + h * W, gpad + (h + g.pad_h) * Wp + g.pad_w, W * sizeof(T));
        }
      }
      if (gw) std::copy(wacc.begin(), wacc.end(), gw + c * KH * KW);
    }
  });
}

// The direct weight gradient splits the batch over threads; a few large images instead go to
// the GEMM path, whose GEMMs thread.
bool direct_weight_grad(const Conv2dGeometry& g) {
  if (!direct::use_backward_weight(g)) return false;
  const double flops = 2.0 * g.out_channels * (g.in_channels / g.groups) * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  return batch_chunks(g.batch, flops) > 1 || num_threads() == 1 || g.batch * flops < kMinParallelFlops;
}

// f32 only: runs the direct kernels where they apply (see conv2d_direct.h).
bool direct_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  if (!direct::use_forward(g)) return false;
  direct::forward(x, w, bias, y, g);
  return true;
}
bool direct_forward(const double*, const double*, const double*, double*, const Conv2dGeometry&) { return false; }

// Computes the gradients the direct kernels handle and clears their pointers.
void direct_backward(const float* gy, const float* x, const float* w, float*& gx, float*& gw,
                     const Conv2dGeometry& g) {
  if (gx && direct::use_backward_input(g)) {
    direct::backward_input(gy, w, gx, g);
    gx = nullptr;
  }
  if (gw && direct_weight_grad(g)) {
    direct::backward_weight(gy, x, gw, g);
    gw = nullptr;
  }
}
void direct_backward(const double*, const double*, const double*, double*&, double*&, const Conv2dGeometry&) {}

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
      if (gx || gw) depthwise_backward(gy.data<scalar_t>(), xp, wp, gx, gw, g);
    } else {
      direct_backward(gy.data<scalar_t>(), xp, wp, gx, gw, g);
      if (gx || gw) backward_gemm(gy.data<scalar_t>(), xp, wp, gx, gw, g);
    }
    if (need_bias) bias_grad(gy.data<scalar_t>(), g, r.bias.data<scalar_t>());
  });
  return r;
}

}  // namespace qslim::cpu
