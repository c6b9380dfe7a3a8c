// INT8 element-wise kernels (int8_conv.h): quantize / dequantize with the NCHW <-> NHWC change,
// add with requantization, requantize into a concat slice, and 256-entry lookup. Each vector path
// performs the same float operations in the same order as its scalar tail, so results never
// depend on where an element falls:
//   quantize:   q = clamp(nearbyint(x / s) + z, qmin, qmax)
//   dequantize: x = s * float(q - z)
//   add:        v = fma(s_a / s_y, float(a - z_a), (s_b / s_y) * float(b - z_b)), requantized to z_y
//   requantize: v = (s_src / s_dst) * float(q - z_src), requantized to z_dst in [0, 255]
// GCC 12 reports false -Wmaybe-uninitialized positives inside its own AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_requant.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kElemGrain = int64_t{1} << 16;
constexpr int64_t kPixelBlock = 64;  // pixels per transposed tile

void check_scale(const char* op, const char* name, float s) {
  QSLIM_CHECK(std::isfinite(s) && s > 0.0f, op, ": ", name, " ", s, " must be positive and finite");
}

void check_range(const char* op, int32_t qmin, int32_t qmax) {
  QSLIM_CHECK(0 <= qmin && qmin <= qmax && qmax <= 255, op, ": uint8 output needs 0 <= qmin <= qmax <= 255, got [",
              qmin, ", ", qmax, "]");
}

// y[i] = q(x[i]) for a contiguous run.
void quantize_run(const float* x, int64_t count, float scale, int32_t zp, int32_t qmin, int32_t qmax, uint8_t* y) {
  int64_t i = 0;
#ifdef QSLIM_INT8_AVX512
  const __m512 s = _mm512_set1_ps(scale);
  const int8_requant::Requant16 requant(zp, qmin, qmax);
  for (; i + 16 <= count; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), requant(_mm512_div_ps(_mm512_loadu_ps(x + i), s)));
#endif
  const float z = static_cast<float>(zp), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  for (; i < count; ++i) y[i] = int8_requant::requant_u8(x[i] / scale, z, lo, hi);
}

#ifdef QSLIM_INT8_AVX512
inline __m512 widen_centered(const uint8_t* p, __m512i zp) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(b), zp));
}
#endif

}  // namespace

void quantize_nchw_to_nhwc_u8(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float scale,
                              int32_t zero_point, int32_t qmin, int32_t qmax, uint8_t* y) {
  const char* op = "quantize_nchw_to_nhwc_u8";
  QSLIM_CHECK(n >= 0 && c > 0 && h > 0 && w > 0, op, ": shape [", n, ", ", c, ", ", h, ", ", w,
              "]: expected positive sizes");
  check_scale(op, "scale", scale);
  check_range(op, qmin, qmax);
  const int64_t hw = h * w;
  const int32_t zp = zero_point, lo = qmin, hi = qmax;
  if (c == 1) {
    parallel_range(n * hw, kElemGrain, [&](int64_t b, int64_t e) { quantize_run(x + b, e - b, scale, zp, lo, hi, y + b); });
    return;
  }
  // Tiles of kPixelBlock pixels: each channel's run is quantized into [c][pixels], then transposed.
  const int64_t blocks_per_image = (hw + kPixelBlock - 1) / kPixelBlock;
  const int64_t grain = std::max<int64_t>(1, kElemGrain / (c * kPixelBlock));
  parallel_range(n * blocks_per_image, grain, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<uint8_t> tile;
    if (static_cast<int64_t>(tile.size()) < c * kPixelBlock) tile.resize(static_cast<size_t>(c * kPixelBlock));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t img = b / blocks_per_image, p0 = (b % blocks_per_image) * kPixelBlock;
      const int64_t np = std::min(kPixelBlock, hw - p0);
      for (int64_t ch = 0; ch < c; ++ch)
        quantize_run(x + (img * c + ch) * hw + p0, np, scale, zp, lo, hi, tile.data() + ch * kPixelBlock);
      uint8_t* yb = y + (img * hw + p0) * c;
      for (int64_t p = 0; p < np; ++p)
        for (int64_t ch = 0; ch < c; ++ch) yb[p * c + ch] = tile[ch * kPixelBlock + p];
    }
  });
}

void dequantize_nhwc_to_nchw_u8(const uint8_t* q, int64_t n, int64_t c, int64_t h, int64_t w, float scale,
                                int32_t zero_point, float* y) {
  const char* op = "dequantize_nhwc_to_nchw_u8";
  QSLIM_CHECK(n >= 0 && c > 0 && h > 0 && w > 0, op, ": shape [", n, ", ", c, ", ", h, ", ", w,
              "]: expected positive sizes");
  QSLIM_CHECK(std::isfinite(scale), op, ": scale ", scale, " must be finite");
  // Every uint8 value maps to one float: a table computed with the formula itself.
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = scale * static_cast<float>(v - zero_point);
  const int64_t hw = h * w;
  const int64_t blocks_per_image = (hw + kPixelBlock - 1) / kPixelBlock;
  const int64_t grain = std::max<int64_t>(1, kElemGrain / (c * kPixelBlock));
  parallel_range(n * blocks_per_image, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t img = b / blocks_per_image, p0 = (b % blocks_per_image) * kPixelBlock;
      const int64_t np = std::min(kPixelBlock, hw - p0);
      const uint8_t* qb = q + (img * hw + p0) * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        float* yc = y + (img * c + ch) * hw + p0;
        for (int64_t p = 0; p < np; ++p) yc[p] = table[qb[p * c + ch]];
      }
    }
  });
}

void int8_add_u8(const uint8_t* a, float scale_a, int32_t zp_a, const uint8_t* b, float scale_b, int32_t zp_b,
                 int64_t count, float scale_y, int32_t zp_y, int32_t qmin, int32_t qmax, uint8_t* y) {
  const char* op = "int8_add_u8";
  QSLIM_CHECK(count >= 0, op, ": negative element count ", count);
  check_scale(op, "scale_a", scale_a);
  check_scale(op, "scale_b", scale_b);
  check_scale(op, "scale_y", scale_y);
  check_range(op, qmin, qmax);
  const float ma = scale_a / scale_y, mb = scale_b / scale_y;
  const float zy = static_cast<float>(zp_y), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  parallel_range(count, kElemGrain, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
#ifdef QSLIM_INT8_AVX512
    const __m512i za = _mm512_set1_epi32(zp_a), zb = _mm512_set1_epi32(zp_b);
    const __m512 va = _mm512_set1_ps(ma), vb = _mm512_set1_ps(mb);
    const int8_requant::Requant16 requant(zp_y, qmin, qmax);
    for (; i + 16 <= i1; i += 16) {
      const __m512 v = _mm512_fmadd_ps(va, widen_centered(a + i, za), _mm512_mul_ps(vb, widen_centered(b + i, zb)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), requant(v));
    }
#endif
    for (; i < i1; ++i) {
      const float v = std::fma(ma, static_cast<float>(a[i] - zp_a), mb * static_cast<float>(b[i] - zp_b));
      y[i] = int8_requant::requant_u8(v, zy, lo, hi);
    }
  });
}

void int8_requantize_into_u8(const uint8_t* src, int64_t pixels, int64_t src_c, float scale_src, int32_t zp_src,
                             uint8_t* dst, int64_t dst_c, int64_t c_offset, float scale_dst, int32_t zp_dst) {
  const char* op = "int8_requantize_into_u8";
  QSLIM_CHECK(pixels >= 0 && src_c > 0 && c_offset >= 0 && c_offset + src_c <= dst_c, op, ": ", src_c,
              " source channels at offset ", c_offset, " do not fit in ", dst_c, " destination channels");
  check_scale(op, "scale_src", scale_src);
  check_scale(op, "scale_dst", scale_dst);
  const float m = scale_src / scale_dst, zd = static_cast<float>(zp_dst);
  const bool same = scale_src == scale_dst && zp_src == zp_dst;  // then v + z_dst == q exactly
  const int64_t grain = std::max<int64_t>(1, kElemGrain / src_c);
  parallel_range(pixels, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const uint8_t* s = src + p * src_c;
      uint8_t* d = dst + p * dst_c + c_offset;
      if (same) {
        std::memcpy(d, s, static_cast<size_t>(src_c));
        continue;
      }
      int64_t c = 0;
#ifdef QSLIM_INT8_AVX512
      const __m512i zs = _mm512_set1_epi32(zp_src);
      const __m512 vm = _mm512_set1_ps(m);
      const int8_requant::Requant16 requant(zp_dst, 0, 255);
      for (; c + 16 <= src_c; c += 16) {
        const __m512 v = _mm512_mul_ps(vm, widen_centered(s + c, zs));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + c), requant(v));
      }
#endif
      for (; c < src_c; ++c) d[c] = int8_requant::requant_u8(m * static_cast<float>(s[c] - zp_src), zd, 0.0f, 255.0f);
    }
  });
}

void int8_lookup_u8(const uint8_t* x, int64_t count, const uint8_t table[256], uint8_t* y) {
  QSLIM_CHECK(count >= 0, "int8_lookup_u8: negative element count ", count);
  parallel_range(count, kElemGrain, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
#if defined(QSLIM_INT8_AVX512) && defined(__AVX512VBMI__)
    // Two 128-entry halves, each one two-register byte permute; the top bit of x picks the half.
    const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
    const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
    for (; i + 64 <= i1; i += 64) {
      const __m512i v = _mm512_loadu_si512(x + i);
      const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
      _mm512_storeu_si512(y + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
#endif
    for (; i < i1; ++i) y[i] = table[x[i]];
  });
}

}  // namespace qslim::cpu
