#include "core/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

int64_t plane_grain(int64_t work_per_plane) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_plane)); }

// NaN propagates: a NaN candidate always wins. Written without short-circuit so it stays branch-free.
template <typename T>
inline bool takes_max(T v, T best) {
  return (v > best) | (v != v);
}

#if defined(__AVX512F__)
// 2x2 stride 2 on f32: 16 outputs per step from two 32-float row segments (masked at the row
// end, so nothing past the plane is read): vertical max of the row pair, then the max of each
// horizontal neighbour pair after an even/odd lane split. Same NaN rule as takes_max.
template <bool kIndices>
void max_pool_2x2_f32(const float* in, float* out, int32_t* idx, const Pool2dGeometry& g) {
  const int64_t W = g.in_w, OW = g.out_w;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  auto takes = [](__m512 v, __m512 best) {
    return static_cast<__mmask16>(_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
  };
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const float* r0 = in + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 16) {
      const int64_t n = std::min<int64_t>(16, OW - ow);  // outputs this step; 2n inputs per row
      const __mmask16 m_out = static_cast<__mmask16>((1u << n) - 1);
      const __mmask16 m_lo = static_cast<__mmask16>(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
      const __mmask16 m_hi = static_cast<__mmask16>(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
      const int64_t c = 2 * ow;
      const __m512 a0 = _mm512_maskz_loadu_ps(m_lo, r0 + c), a1 = _mm512_maskz_loadu_ps(m_hi, r0 + c + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(m_lo, r1 + c), b1 = _mm512_maskz_loadu_ps(m_hi, r1 + c + 16);
      const __mmask16 t0 = takes(b0, a0), t1 = takes(b1, a1);
      const __m512 v0 = _mm512_mask_blend_ps(t0, a0, b0), v1 = _mm512_mask_blend_ps(t1, a1, b1);
      const __m512 ve = _mm512_permutex2var_ps(v0, even, v1), vo = _mm512_permutex2var_ps(v0, odd, v1);
      const __mmask16 t = takes(vo, ve);
      _mm512_mask_storeu_ps(out + oh * OW + ow, m_out, _mm512_mask_blend_ps(t, ve, vo));
      if constexpr (kIndices) {
        const __m512i base = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(2 * oh * W + c)));
        const __m512i w16 = _mm512_set1_epi32(static_cast<int32_t>(W)), s16 = _mm512_set1_epi32(16);
        const __m512i i0 = _mm512_mask_add_epi32(base, t0, base, w16);
        const __m512i base1 = _mm512_add_epi32(base, s16);
        const __m512i i1 = _mm512_mask_add_epi32(base1, t1, base1, w16);
        const __m512i ie = _mm512_permutex2var_epi32(i0, even, i1), io = _mm512_permutex2var_epi32(i0, odd, i1);
        _mm512_mask_storeu_epi32(idx + oh * OW + ow, m_out, _mm512_mask_blend_epi32(t, ie, io));
      }
    }
  }
}
#endif

// Portable 2x2 stride 2 (f64, or without AVX-512): branch-free scalar loop.
template <typename T, bool kIndices>
void max_pool_2x2(const T* in, T* out, int32_t* idx, const Pool2dGeometry& g) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    max_pool_2x2_f32<kIndices>(in, out, idx, g);
    return;
  }
#endif
  const int64_t W = g.in_w, OW = g.out_w;
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* r0 = in + 2 * oh * W;
    const T* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t c = 2 * ow;
      const bool ta = takes_max(r1[c], r0[c]), tb = takes_max(r1[c + 1], r0[c + 1]);
      const T a = ta ? r1[c] : r0[c], b = tb ? r1[c + 1] : r0[c + 1];
      const bool t = takes_max(b, a);
      out[oh * OW + ow] = t ? b : a;
      if constexpr (kIndices) {
        const int64_t ia = (ta ? (2 * oh + 1) : 2 * oh) * W + c, ib = (tb ? (2 * oh + 1) : 2 * oh) * W + c + 1;
        idx[oh * OW + ow] = static_cast<int32_t>(t ? ib : ia);
      }
    }
  }
}

template <typename T, bool kIndices>
void max_pool_plane(const T* in, T* out, int32_t* idx, const Pool2dGeometry& g) {
  const int64_t H = g.in_h, W = g.in_w;
  if (g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0) {
    max_pool_2x2<T, kIndices>(in, out, idx, g);
    return;
  }
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const int64_t hs = std::max<int64_t>(oh * g.stride_h - g.pad_h, 0);
    const int64_t he = std::min(oh * g.stride_h - g.pad_h + g.kernel_h, H);
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const int64_t ws = std::max<int64_t>(ow * g.stride_w - g.pad_w, 0);
      const int64_t we = std::min(ow * g.stride_w - g.pad_w + g.kernel_w, W);
      int64_t bi = hs * W + ws;
      T best = in[bi];
      for (int64_t h = hs; h < he; ++h)
        for (int64_t w = ws; w < we; ++w) {
          const T v = in[h * W + w];
          const bool t = takes_max(v, best);
          best = t ? v : best;
          bi = t ? h * W + w : bi;
        }
      out[oh * g.out_w + ow] = best;
      if constexpr (kIndices) idx[oh * g.out_w + ow] = static_cast<int32_t>(bi);
    }
  }
}

// Divisor of the window of output (oh, ow); PyTorch's rule (floor mode).
inline int64_t avg_divisor(const Pool2dGeometry& g, int64_t oh, int64_t ow, bool count_include_pad) {
  const int64_t hs = oh * g.stride_h - g.pad_h, ws = ow * g.stride_w - g.pad_w;
  const int64_t he = std::min(hs + g.kernel_h, g.in_h + g.pad_h), we = std::min(ws + g.kernel_w, g.in_w + g.pad_w);
  if (count_include_pad) return (he - hs) * (we - ws);
  return (std::min(he, g.in_h) - std::max<int64_t>(hs, 0)) * (std::min(we, g.in_w) - std::max<int64_t>(ws, 0));
}

inline int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

template <typename T>
void adaptive_avg_plane(const T* src, T* dst, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  if (OH == 1 && OW == 1) {  // global average: one flat sum instead of H short row sums
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < H * W; ++i) s += src[i];
    dst[0] = s / static_cast<T>(H * W);
    return;
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
      T s = 0;
      for (int64_t h = hs; h < he; ++h) {
        const T* r = src + h * W;
#pragma omp simd reduction(+ : s)
        for (int64_t w = ws; w < we; ++w) s += r[w];
      }
      dst[oh * OW + ow] = s / static_cast<T>((he - hs) * (we - ws));
    }
  }
}

template <typename T>
void adaptive_avg_plane_backward(const T* gy, T* dst, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  if (OH == 1 && OW == 1) {
    std::fill(dst, dst + H * W, gy[0] / static_cast<T>(H * W));
    return;
  }
  std::fill(dst, dst + H * W, T(0));
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
      const T v = gy[oh * OW + ow] / static_cast<T>((he - hs) * (we - ws));
      for (int64_t h = hs; h < he; ++h) {
        T* r = dst + h * W;
#pragma omp simd
        for (int64_t w = ws; w < we; ++w) r[w] += v;
      }
    }
  }
}

}  // namespace

Pool2dGeometry pool2d_geometry(const char* op, const Shape& input, std::array<int64_t, 2> kernel,
                               std::array<int64_t, 2> stride, std::array<int64_t, 2> padding) {
  QSLIM_CHECK(input.size() == 4, op, ": expected input [N, C, H, W], got ", shape_str(input));
  Pool2dGeometry g;
  g.batch = input[0];
  g.channels = input[1];
  g.in_h = input[2];
  g.in_w = input[3];
  QSLIM_CHECK(kernel[0] >= 1 && kernel[1] >= 1, op, ": kernel size must be positive, got [", kernel[0], ", ",
              kernel[1], "]");
  QSLIM_CHECK(stride[0] >= 0 && stride[1] >= 0, op, ": stride must be positive (0 means the kernel size), got [",
              stride[0], ", ", stride[1], "]");
  QSLIM_CHECK(padding[0] >= 0 && padding[1] >= 0 && padding[0] * 2 <= kernel[0] && padding[1] * 2 <= kernel[1], op,
              ": padding [", padding[0], ", ", padding[1], "] must be non-negative and at most half the kernel [",
              kernel[0], ", ", kernel[1], "]");
  g.kernel_h = kernel[0];
  g.kernel_w = kernel[1];
  g.stride_h = stride[0] == 0 ? kernel[0] : stride[0];
  g.stride_w = stride[1] == 0 ? kernel[1] : stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  QSLIM_CHECK(g.in_h + 2 * g.pad_h >= g.kernel_h && g.in_w + 2 * g.pad_w >= g.kernel_w, op, ": kernel [", g.kernel_h,
              ", ", g.kernel_w, "] is larger than the padded input ", g.in_h + 2 * g.pad_h, "x", g.in_w + 2 * g.pad_w,
              " (input ", shape_str(input), ", padding [", g.pad_h, ", ", g.pad_w, "])");
  g.out_h = (g.in_h + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1;
  g.out_w = (g.in_w + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
  return g;
}

MaxPool2dResult max_pool2d_forward(const Tensor& x, const Pool2dGeometry& g, bool with_indices) {
  Tensor xc = x.contiguous();
  const Shape out_shape{g.batch, g.channels, g.out_h, g.out_w};
  MaxPool2dResult r;
  r.output = Tensor::empty(out_shape, x.dtype());
  if (with_indices) r.indices = Tensor::empty(out_shape, DType::I32);
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  QSLIM_CHECK(in_plane <= INT32_MAX, "max_pool2d: input plane ", g.in_h, "x", g.in_w, " too large for i32 indices");
  QSLIM_DISPATCH_FLOAT(x.dtype(), "max_pool2d", [&] {
    const scalar_t* in = xc.data<scalar_t>();
    scalar_t* out = r.output.data<scalar_t>();
    int32_t* idx = with_indices ? r.indices.data<int32_t>() : nullptr;
    parallel_range(g.batch * g.channels, plane_grain(out_plane * g.kernel_h * g.kernel_w), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        if (idx)
          max_pool_plane<scalar_t, true>(in + p * in_plane, out + p * out_plane, idx + p * out_plane, g);
        else
          max_pool_plane<scalar_t, false>(in + p * in_plane, out + p * out_plane, nullptr, g);
      }
    });
  });
  return r;
}

Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Pool2dGeometry& g) {
  const Shape out_shape{g.batch, g.channels, g.out_h, g.out_w};
  QSLIM_CHECK(grad_out.shape() == out_shape && indices.shape() == out_shape && indices.dtype() == DType::I32,
              "max_pool2d backward: gradient ", shape_str(grad_out.shape()), " and indices ",
              shape_str(indices.shape()), " must both have the output shape ", shape_str(out_shape));
  Tensor gy = grad_out.contiguous(), ic = indices.contiguous();
  Tensor gx = Tensor::empty({g.batch, g.channels, g.in_h, g.in_w}, grad_out.dtype());
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  QSLIM_DISPATCH_FLOAT(grad_out.dtype(), "max_pool2d backward", [&] {
    const scalar_t* gp = gy.data<scalar_t>();
    const int32_t* ip = ic.data<int32_t>();
    scalar_t* xp = gx.data<scalar_t>();
    parallel_range(g.batch * g.channels, plane_grain(in_plane + out_plane), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        scalar_t* dst = xp + p * in_plane;
        std::fill(dst, dst + in_plane, scalar_t(0));
        const scalar_t* src = gp + p * out_plane;
        const int32_t* id = ip + p * out_plane;
        for (int64_t i = 0; i < out_plane; ++i) dst[id[i]] += src[i];
      }
    });
  });
  return gx;
}

Tensor avg_pool2d_forward(const Tensor& x, const Pool2dGeometry& g, bool count_include_pad) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({g.batch, g.channels, g.out_h, g.out_w}, x.dtype());
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "avg_pool2d", [&] {
    const scalar_t* in = xc.data<scalar_t>();
    scalar_t* out = y.data<scalar_t>();
    parallel_range(g.batch * g.channels, plane_grain(out_plane * g.kernel_h * g.kernel_w), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const scalar_t* src = in + p * in_plane;
        scalar_t* dst = out + p * out_plane;
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const int64_t hs = std::max<int64_t>(oh * g.stride_h - g.pad_h, 0);
          const int64_t he = std::min(oh * g.stride_h - g.pad_h + g.kernel_h, g.in_h);
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            const int64_t ws = std::max<int64_t>(ow * g.stride_w - g.pad_w, 0);
            const int64_t we = std::min(ow * g.stride_w - g.pad_w + g.kernel_w, g.in_w);
            scalar_t s = 0;
            for (int64_t h = hs; h < he; ++h)
              for (int64_t w = ws; w < we; ++w) s += src[h * g.in_w + w];
            dst[oh * g.out_w + ow] = s / static_cast<scalar_t>(avg_divisor(g, oh, ow, count_include_pad));
          }
        }
      }
    });
  });
  return y;
}

Tensor avg_pool2d_backward(const Tensor& grad_out, const Pool2dGeometry& g, bool count_include_pad) {
  const Shape out_shape{g.batch, g.channels, g.out_h, g.out_w};
  QSLIM_CHECK(grad_out.shape() == out_shape, "avg_pool2d backward: gradient ", shape_str(grad_out.shape()),
              " does not match the output ", shape_str(out_shape));
  Tensor gy = grad_out.contiguous();
  Tensor gx = Tensor::empty({g.batch, g.channels, g.in_h, g.in_w}, grad_out.dtype());
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  QSLIM_DISPATCH_FLOAT(grad_out.dtype(), "avg_pool2d backward", [&] {
    const scalar_t* gp = gy.data<scalar_t>();
    scalar_t* xp = gx.data<scalar_t>();
    parallel_range(g.batch * g.channels, plane_grain(out_plane * g.kernel_h * g.kernel_w), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        scalar_t* dst = xp + p * in_plane;
        std::fill(dst, dst + in_plane, scalar_t(0));
        const scalar_t* src = gp + p * out_plane;
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const int64_t hs = std::max<int64_t>(oh * g.stride_h - g.pad_h, 0);
          const int64_t he = std::min(oh * g.stride_h - g.pad_h + g.kernel_h, g.in_h);
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            const int64_t ws = std::max<int64_t>(ow * g.stride_w - g.pad_w, 0);
            const int64_t we = std::min(ow * g.stride_w - g.pad_w + g.kernel_w, g.in_w);
            const scalar_t v =
                src[oh * g.out_w + ow] / static_cast<scalar_t>(avg_divisor(g, oh, ow, count_include_pad));
            for (int64_t h = hs; h < he; ++h)
              for (int64_t w = ws; w < we; ++w) dst[h * g.in_w + w] += v;
          }
        }
      }
    });
  });
  return gx;
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x, std::array<int64_t, 2> output_size) {
  QSLIM_CHECK(x.dim() == 4, "adaptive_avg_pool2d: expected input [N, C, H, W], got ", shape_str(x.shape()));
  QSLIM_CHECK(output_size[0] >= 1 && output_size[1] >= 1, "adaptive_avg_pool2d: output size must be positive, got [",
              output_size[0], ", ", output_size[1], "]");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), OH = output_size[0], OW = output_size[1];
  QSLIM_CHECK(H >= 1 && W >= 1, "adaptive_avg_pool2d: empty spatial size in input ", shape_str(x.shape()));
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({N, C, OH, OW}, x.dtype());
  QSLIM_DISPATCH_FLOAT(x.dtype(), "adaptive_avg_pool2d", [&] {
    const scalar_t* in = xc.data<scalar_t>();
    scalar_t* out = y.data<scalar_t>();
    parallel_range(N * C, plane_grain(H * W + OH * OW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) adaptive_avg_plane(in + p * H * W, out + p * OH * OW, H, W, OH, OW);
    });
  });
  return y;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape) {
  QSLIM_CHECK(input_shape.size() == 4 && grad_out.dim() == 4 && grad_out.size(0) == input_shape[0] &&
                  grad_out.size(1) == input_shape[1],
              "adaptive_avg_pool2d backward: gradient ", shape_str(grad_out.shape()), " does not fit input ",
              shape_str(input_shape));
  const int64_t N = input_shape[0], C = input_shape[1], H = input_shape[2], W = input_shape[3];
  const int64_t OH = grad_out.size(2), OW = grad_out.size(3);
  Tensor gy = grad_out.contiguous();
  Tensor gx = Tensor::empty(input_shape, grad_out.dtype());
  QSLIM_DISPATCH_FLOAT(grad_out.dtype(), "adaptive_avg_pool2d backward", [&] {
    const scalar_t* gp = gy.data<scalar_t>();
    scalar_t* xp = gx.data<scalar_t>();
    parallel_range(N * C, plane_grain(H * W + OH * OW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        adaptive_avg_plane_backward(gp + p * OH * OW, xp + p * H * W, H, W, OH, OW);
    });
  });
  return gx;
}

}  // namespace qslim::cpu
