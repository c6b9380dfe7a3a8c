#include "core/cpu/depthwise_blocked.h"

// GCC 12 reports false "may be used uninitialized" warnings inside the AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/scratch.h"
#include "core/cpu/transpose.h"

namespace qslim::cpu::depthwise_blocked {

#ifdef __AVX512F__
namespace {

constexpr int64_t kL = 16;
// Planes up to this size; beyond, the row-vector kernels of depthwise.cpp fill their vectors.
constexpr int64_t kMaxPlane = 64 * 64;
// Output planes this small leave most lanes of row vectors empty.
constexpr int64_t kShortPlane = 8 * 8;

struct Geo {
  int64_t C, HW, P, Wp, plane_p, taps, blocks;
  std::vector<int64_t> padpos;  // per input pixel: its vector in the padded block
  std::vector<int64_t> toff;    // per tap: floats from an output pixel's window origin
};

Geo make_geo(const Conv2dGeometry& g) {
  Geo e;
  e.C = g.in_channels;
  e.HW = g.in_h * g.in_w;
  e.P = g.out_h * g.out_w;
  e.Wp = g.in_w + 2 * g.pad_w;
  e.plane_p = (g.in_h + 2 * g.pad_h) * e.Wp;
  e.taps = g.kernel_h * g.kernel_w;
  e.blocks = (e.C + kL - 1) / kL;
  for (int64_t h = 0; h < g.in_h; ++h)
    for (int64_t w = 0; w < g.in_w; ++w) e.padpos.push_back((h + g.pad_h) * e.Wp + w + g.pad_w);
  for (int64_t i = 0; i < g.kernel_h; ++i)
    for (int64_t j = 0; j < g.kernel_w; ++j) e.toff.push_back((i * g.dilation_h * e.Wp + j * g.dilation_w) * kL);
  return e;
}

// Origin (in floats) of output pixel (oh, ow)'s window in the padded block.
inline int64_t origin(const Conv2dGeometry& g, const Geo& e, int64_t oh, int64_t ow) {
  return (oh * g.stride_h * e.Wp + ow * g.stride_w) * kL;
}

inline __mmask16 lane_mask(int64_t n) { return n >= kL ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1); }

// dst vector pos(q) = the nc channel values of pixel q (lanes past nc zero), from planes of `plane`.
template <typename Pos>
void to_block(const float* src, int64_t plane, int64_t nc, int64_t npix, float* dst, Pos pos) {
  for (int64_t q0 = 0; q0 < npix; q0 += kL) {
    const int64_t m = std::min(kL, npix - q0);
    const __mmask16 mk = lane_mask(m);
    __m512 r[16];
    for (int64_t k = 0; k < kL; ++k)
      r[k] = k < nc ? _mm512_maskz_loadu_ps(mk, src + k * plane + q0) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t t = 0; t < m; ++t) _mm512_storeu_ps(dst + pos(q0 + t) * kL, r[t]);
  }
}

// The inverse: planes (first nc channels) from vectors pos(q).
template <typename Pos>
void from_block(const float* src, Pos pos, int64_t nc, int64_t npix, float* dst, int64_t plane) {
  for (int64_t q0 = 0; q0 < npix; q0 += kL) {
    const int64_t m = std::min(kL, npix - q0);
    const __mmask16 mk = lane_mask(m);
    __m512 r[16];
    for (int64_t t = 0; t < kL; ++t) r[t] = t < m ? _mm512_loadu_ps(src + pos(q0 + t) * kL) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t k = 0; k < nc; ++k) _mm512_mask_storeu_ps(dst + k * plane + q0, mk, r[k]);
  }
}

// Weights [C, 1, kh, kw] as [block][tap][16] and bias as [block][16], zero past C.
void pack(const float* w, const float* bias, const Geo& e, float* wpack, float* bpack) {
  std::fill(wpack, wpack + e.blocks * e.taps * kL, 0.0f);
  std::fill(bpack, bpack + e.blocks * kL, 0.0f);
  for (int64_t c = 0; c < e.C; ++c) {
    for (int64_t t = 0; t < e.taps; ++t) wpack[((c / kL) * e.taps + t) * kL + c % kL] = w[c * e.taps + t];
    if (bias) bpack[c] = bias[c];
  }
}

// R consecutive output pixels of a row: acc = bias + sum over taps of w[tap] * x[window + tap].
template <int R, int T>
void fwd_pixels(const float* in, int64_t step, const int64_t* toff, int64_t taps, const float* w, __m512 b,
                float* out) {
  const int64_t nt = T ? T : taps;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = b;
  for (int64_t t = 0; t < nt; ++t) {
    const __m512 wv = _mm512_loadu_ps(w + t * kL);
    const float* src = in + toff[t];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(src + r * step), acc[r]);
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kL, acc[r]);
}

using FwdFn = void (*)(const float*, int64_t, const int64_t*, int64_t, const float*, __m512, float*);
constexpr int kRow = 8;

template <int T>
FwdFn fwd_kernel_t(int64_t r) {
  switch (r) {
    case 1: return fwd_pixels<1, T>;
    case 2: return fwd_pixels<2, T>;
    case 3: return fwd_pixels<3, T>;
    case 4: return fwd_pixels<4, T>;
    case 5: return fwd_pixels<5, T>;
    case 6: return fwd_pixels<6, T>;
    case 7: return fwd_pixels<7, T>;
    default: return fwd_pixels<kRow, T>;
  }
}

FwdFn fwd_kernel(int64_t r, int64_t taps) { return taps == 9 ? fwd_kernel_t<9>(r) : fwd_kernel_t<0>(r); }

// yb [P][16] from the padded block xb.
void forward_block(const float* xb, const float* wb, __m512 b, float* yb, const Conv2dGeometry& g, const Geo& e) {
  const int64_t step = g.stride_w * kL;
  const FwdFn full = fwd_kernel(kRow, e.taps), tail = fwd_kernel(g.out_w % kRow, e.taps);
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t ow = 0; ow < g.out_w; ow += kRow)
      (g.out_w - ow >= kRow ? full : tail)(xb + origin(g, e, oh, ow), step, e.toff.data(), e.taps, wb, b,
                                            yb + (oh * g.out_w + ow) * kL);
}

// acc[tap] += gy[pixel] * x[window + tap] over the block's output pixels (T taps kept in registers).
template <int T>
void weight_block_t(const float* xb, const float* gyb, const Conv2dGeometry& g, const Geo& e, float* acc_mem) {
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_loadu_ps(acc_mem + t * kL);
  int64_t toff[T];
  for (int t = 0; t < T; ++t) toff[t] = e.toff[t];
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const __m512 gv = _mm512_loadu_ps(gyb + (oh * g.out_w + ow) * kL);
      const float* src = xb + origin(g, e, oh, ow);
      for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(src + toff[t]), acc[t]);
    }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc_mem + t * kL, acc[t]);
}

void weight_block(const float* xb, const float* gyb, const Conv2dGeometry& g, const Geo& e, float* acc_mem) {
  if (e.taps == 9) return weight_block_t<9>(xb, gyb, g, e, acc_mem);
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const __m512 gv = _mm512_loadu_ps(gyb + (oh * g.out_w + ow) * kL);
      const float* src = xb + origin(g, e, oh, ow);
      for (int64_t t = 0; t < e.taps; ++t) {
        float* a = acc_mem + t * kL;
        _mm512_storeu_ps(a, _mm512_fmadd_ps(gv, _mm512_loadu_ps(src + e.toff[t]), _mm512_loadu_ps(a)));
      }
    }
}

// gxb (padded, zeroed by the caller) += w[tap] * gy[pixel] at window + tap, for every output pixel.
void input_block(const float* gyb, const float* wb, const Conv2dGeometry& g, const Geo& e, float* gxb) {
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const __m512 gv = _mm512_loadu_ps(gyb + (oh * g.out_w + ow) * kL);
      float* dst = gxb + origin(g, e, oh, ow);
      for (int64_t t = 0; t < e.taps; ++t) {
        float* d = dst + e.toff[t];
        _mm512_storeu_ps(d, _mm512_fmadd_ps(_mm512_loadu_ps(wb + t * kL), gv, _mm512_loadu_ps(d)));
      }
    }
}

}  // namespace

// The transposes cost about as much as a 3x3 depthwise conv's FMAs; they pay off where rows are
// strided or too short to fill vectors (measured on MobileNetV2 shapes: 2-3x on stride 2 and 7x7
// planes, slower than depthwise.cpp on stride-1 14x14 and 28x28 planes). The scatter-add input
// gradient pays off on strided convs only.
bool use_forward(const Conv2dGeometry& g) {
  return g.depthwise() && g.in_h * g.in_w <= kMaxPlane &&
         (g.stride_h > 1 || g.stride_w > 1 || g.out_h * g.out_w <= kShortPlane);
}
bool use_backward_weight(const Conv2dGeometry& g) { return use_forward(g); }
bool use_backward_input(const Conv2dGeometry& g) {
  return g.depthwise() && g.in_h * g.in_w <= kMaxPlane && (g.stride_h > 1 || g.stride_w > 1);
}

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  const Geo e = make_geo(g);
  std::vector<float> wpack(e.blocks * e.taps * kL), bpack(e.blocks * kL);
  pack(w, bias, e, wpack.data(), bpack.data());
  const int64_t items = g.batch * e.blocks;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMinChunkFlops / (2.0 * kL * e.taps * e.P)));
  parallel_range(items, grain, [&](int64_t i0, int64_t i1) {
    float* xb = thread_scratch<float>(ScratchSlot::Plane, e.plane_p * kL);
    float* yb = thread_scratch<float>(ScratchSlot::Columns, e.P * kL);
    std::fill(xb, xb + e.plane_p * kL, 0.0f);  // the border stays zero; interiors are rewritten
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / e.blocks, b = i % e.blocks, c0 = b * kL, nc = std::min(kL, e.C - c0);
      to_block(x + (n * e.C + c0) * e.HW, e.HW, nc, e.HW, xb, [&](int64_t q) { return e.padpos[q]; });
      forward_block(xb, wpack.data() + b * e.taps * kL, _mm512_loadu_ps(bpack.data() + b * kL), yb, g, e);
      from_block(yb, [](int64_t q) { return q; }, nc, e.P, y + (n * e.C + c0) * e.P, e.P);
    }
  });
}

void backward(const float* gy, const float* x, const float* w, float* gx, float* gw, const Conv2dGeometry& g) {
  if (!gx && !gw) return;
  const Geo e = make_geo(g);
  std::vector<float> wpack(e.blocks * e.taps * kL), bpack(e.blocks * kL);
  if (gx) pack(w, nullptr, e, wpack.data(), bpack.data());
  const int64_t wsize = e.blocks * e.taps * kL;
  const int64_t chunks = batch_chunks(g.batch, 2.0 * (gx ? 2 : 1) * e.C * e.taps * e.P);
  // Weight-gradient sums per chunk, added in chunk order.
  std::vector<float> acc_all(gw ? chunks * wsize : 0, 0.0f);
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    float* xb = gw ? thread_scratch<float>(ScratchSlot::Plane, e.plane_p * kL) : nullptr;
    float* gxb = gx ? thread_scratch<float>(ScratchSlot::GradPlane, e.plane_p * kL) : nullptr;
    float* gyb = thread_scratch<float>(ScratchSlot::Columns, e.P * kL);
    if (xb) std::fill(xb, xb + e.plane_p * kL, 0.0f);
    float* acc = gw ? acc_all.data() + chunk * wsize : nullptr;
    for (int64_t n = b0; n < b1; ++n)
      for (int64_t b = 0; b < e.blocks; ++b) {
        const int64_t c0 = b * kL, nc = std::min(kL, e.C - c0);
        to_block(gy + (n * e.C + c0) * e.P, e.P, nc, e.P, gyb, [](int64_t q) { return q; });
        if (gw) {
          to_block(x + (n * e.C + c0) * e.HW, e.HW, nc, e.HW, xb, [&](int64_t q) { return e.padpos[q]; });
          weight_block(xb, gyb, g, e, acc + b * e.taps * kL);
        }
        if (gx) {
          std::fill(gxb, gxb + e.plane_p * kL, 0.0f);
          input_block(gyb, wpack.data() + b * e.taps * kL, g, e, gxb);
          from_block(gxb, [&](int64_t q) { return e.padpos[q]; }, nc, e.HW, gx + (n * e.C + c0) * e.HW, e.HW);
        }
      }
  });
  if (!gw) return;
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t k = 0; k < wsize; ++k) acc_all[k] += acc_all[c * wsize + k];
  for (int64_t c = 0; c < e.C; ++c)
    for (int64_t t = 0; t < e.taps; ++t) gw[c * e.taps + t] = acc_all[((c / kL) * e.taps + t) * kL + c % kL];
}

#else  // no AVX-512: depthwise.cpp's kernels run instead

bool use_forward(const Conv2dGeometry&) { return false; }
bool use_backward_weight(const Conv2dGeometry&) { return false; }
bool use_backward_input(const Conv2dGeometry&) { return false; }
void forward(const float*, const float*, const float*, float*, const Conv2dGeometry&) {
  QSLIM_FAIL("depthwise_blocked::forward: built without AVX-512");
}
void backward(const float*, const float*, const float*, float*, float*, const Conv2dGeometry&) {
  QSLIM_FAIL("depthwise_blocked::backward: built without AVX-512");
}

#endif

}  // namespace qslim::cpu::depthwise_blocked
