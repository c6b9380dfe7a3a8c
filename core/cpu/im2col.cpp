#include "core/cpu/im2col.h"

#include <algorithm>
#include <cstring>

#include "core/cpu/simd.h"

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

// Any stride: bounds handled per run.
template <typename T>
void im2col_any(const T* x, const Conv2dGeometry& g, T* cols) {
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

// Adds columns back into one image (which the caller zeroed).
template <typename T>
void col2im_any(const T* cols, const Conv2dGeometry& g, T* x) {
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

// ---------------------------------------------------------------- stride 1
// With stride 1 each column-matrix row is, per output row, a run of OW consecutive entries of a
// zero-padded copy of the image. Runs are copied (or, for col2im, accumulated) a vector at a
// time: copies may run up to a vector past their end (later runs overwrite that), accumulations
// mask the lanes past the end. Buffers therefore carry one vector of slack.
struct PaddedImage {
  int64_t cols, plane, size;
};

template <typename T>
PaddedImage padded_image(const Conv2dGeometry& g) {
  PaddedImage p;
  p.cols = g.in_w + 2 * g.pad_w;
  p.plane = (g.in_h + 2 * g.pad_h) * p.cols;
  p.size = g.in_channels * p.plane + Vec<T>::lanes;
  return p;
}

// `pad` was zeroed once with this layout; only the image interior is rewritten.
template <typename T>
void im2col_s1(const T* x, const Conv2dGeometry& g, const PaddedImage& l, T* pad, T* cols) {
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t H = g.in_h, W = g.in_w, OH = g.out_h, OW = g.out_w, P = OH * OW;
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(pad + c * l.plane + (h + g.pad_h) * l.cols + g.pad_w, x + (c * H + h) * W, W * sizeof(T));
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t kh = 0; kh < g.kernel_h; ++kh)
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        T* row = cols + ((c * g.kernel_h + kh) * g.kernel_w + kw) * P;
        const T* src = pad + c * l.plane + kh * g.dilation_h * l.cols + kw * g.dilation_w;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t v = 0; v < OW; v += L) vstore(row + oh * OW + v, vload(src + oh * l.cols + v));
      }
}

// x (one image) = col2im(cols); `pad` is scratch of l.size entries.
template <typename T>
void col2im_s1(const T* cols, const Conv2dGeometry& g, const PaddedImage& l, T* pad, T* x) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t H = g.in_h, W = g.in_w, OH = g.out_h, OW = g.out_w, P = OH * OW;
  const int64_t tail_start = (OW - 1) / L * L;
  const typename Vec<T>::mask keep =
      lane_indices<T>() < static_cast<typename Vec<T>::index_t>(OW - tail_start);
  const int64_t step = (L + l.cols - 1) / l.cols;
  std::fill(pad, pad + l.size, T(0));
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t kh = 0; kh < g.kernel_h; ++kh)
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const T* row = cols + ((c * g.kernel_h + kh) * g.kernel_w + kw) * P;
        T* dst = pad + c * l.plane + kh * g.dilation_h * l.cols + kw * g.dilation_w;
        // Rows `step` apart: a load never overlaps part of a store still in flight (which stalls).
        for (int64_t first = 0; first < step; ++first)
          for (int64_t oh = first; oh < OH; oh += step) {
            T* d = dst + oh * l.cols;
            const T* sp = row + oh * OW;
            for (int64_t v = 0; v < tail_start; v += L) vstore(d + v, vload(d + v) + vload(sp + v));
            const V t = keep ? vload(sp + tail_start) : V{};
            vstore(d + tail_start, vload(d + tail_start) + t);
          }
      }
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(x + (c * H + h) * W, pad + c * l.plane + (h + g.pad_h) * l.cols + g.pad_w, W * sizeof(T));
}

bool stride1(const Conv2dGeometry& g) { return g.stride_h == 1 && g.stride_w == 1; }

}  // namespace

template <typename T>
int64_t im2col_columns_size(const Conv2dGeometry& g) {
  return g.in_channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w + Vec<T>::lanes;
}

template <typename T>
int64_t im2col_scratch_size(const Conv2dGeometry& g) {
  return padded_image<T>(g).size;
}

template <typename T>
void im2col(const T* x, const Conv2dGeometry& g, T* scratch, T* cols) {
  if (stride1(g))
    im2col_s1(x, g, padded_image<T>(g), scratch, cols);
  else
    im2col_any(x, g, cols);
}

template <typename T>
void col2im(const T* cols, const Conv2dGeometry& g, T* scratch, T* x) {
  if (stride1(g)) {
    col2im_s1(cols, g, padded_image<T>(g), scratch, x);
  } else {
    std::fill(x, x + g.in_channels * g.in_h * g.in_w, T(0));
    col2im_any(cols, g, x);
  }
}

template int64_t im2col_columns_size<float>(const Conv2dGeometry&);
template int64_t im2col_columns_size<double>(const Conv2dGeometry&);
template int64_t im2col_scratch_size<float>(const Conv2dGeometry&);
template int64_t im2col_scratch_size<double>(const Conv2dGeometry&);
template void im2col<float>(const float*, const Conv2dGeometry&, float*, float*);
template void im2col<double>(const double*, const Conv2dGeometry&, double*, double*);
template void col2im<float>(const float*, const Conv2dGeometry&, float*, float*);
template void col2im<double>(const double*, const Conv2dGeometry&, double*, double*);

}  // namespace qslim::cpu
