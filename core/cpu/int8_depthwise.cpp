// INT8 depthwise convolution, NHWC (int8_conv.h).
//
// AVX-512 VNNI path: vpdpbusd multiplies 4 uint8 x int8 pairs per 32-bit lane, so every lane of a
// 16-channel unit takes 4 horizontal taps of one channel at once. Each input row that an output
// row needs is rebuilt once as "interleaved" chunks — for every output column ow and group g of 4
// kernel columns, 16 channels x the 4 input pixels those taps read — and kept in a small per-thread
// ring while the next output rows reuse it (stride 1 builds one new row per output row). The row
// is first copied with zero-point padding, so building is branch-free (one 64-byte load and a byte
// permute per chunk when there are 16 channels). Output rows run up to 4 units of 16 channels per
// pixel at once, weights in registers. Padding reads the input zero point, whose contribution the
// folded bias removes:
//   sum_taps (x - z) w + bias = sum_taps x w + (bias - z * sum_taps w)   (x = z on padding).
// Other ISAs run a portable direct loop on the widened taps.
// GCC 12 reports false -Wmaybe-uninitialized positives inside its own AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu/int8_checks.h"
#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_requant.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

#if defined(QSLIM_INT8_AVX512) && defined(__AVX512VNNI__)
#define QSLIM_INT8_DW_VNNI 1
#endif

namespace qslim::cpu {
namespace {

constexpr int64_t kUnit = 16;      // channels per vector of int32 lanes
constexpr int64_t kMaxFastTaps = 64;  // kernel_h * tap groups handled by the VNNI path

bool vnni_path_available() {
#ifdef QSLIM_INT8_DW_VNNI
  static const bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl");
  return ok;
#else
  return false;
#endif
}

// Rows of output (flattened n * out_h + oh) per task: enough work to pay for a task and for the
// rows a task rebuilds at its start.
int64_t row_grain(const Int8ConvGeometry& g, int64_t out_w) {
  const int64_t per_row = std::max<int64_t>(1, out_w * g.in_c * g.kernel_h * g.kernel_w);
  return std::max<int64_t>(2 * g.kernel_h, 1 + (int64_t{1} << 19) / per_row);
}

// ---------------------------------------------------------------------------------------------
// Portable path: int32 accumulators per channel, taps widened to int16.
template <typename OutT>
void depthwise_rows_portable(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                             const Int8Output& out, OutT* y, int64_t r0, int64_t r1) {
  const int64_t C = g.in_c, OH = g.out_h(), OW = g.out_w(), z = w.in_zero_point;
  thread_local std::vector<int32_t> acc_buf;
  if (static_cast<int64_t>(acc_buf.size()) < C) acc_buf.resize(C);
  int32_t* acc = acc_buf.data();
  const float zp = static_cast<float>(out.zero_point), qmin = static_cast<float>(out.qmin),
              qmax = static_cast<float>(out.qmax);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / OH, oh = r % OH;
    for (int64_t ow = 0; ow < OW; ++ow) {
      std::copy(w.bias.begin(), w.bias.end(), acc);
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
          if (iw < 0 || iw >= g.in_w) continue;
          const uint8_t* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * C;
          const int16_t* tp = w.taps.data() + (i * g.kernel_w + j) * C;
          for (int64_t c = 0; c < C; ++c) acc[c] += (static_cast<int32_t>(xp[c]) - z) * tp[c];
        }
      }
      OutT* yp = y + (r * OW + ow) * C;
      for (int64_t c = 0; c < C; ++c) {
        const float v = static_cast<float>(acc[c]) * w.multiplier[c];
        if constexpr (std::is_same_v<OutT, uint8_t>) {
          yp[c] = int8_requant::requant_u8(v, zp, qmin, qmax);
        } else {
          yp[c] = int8_requant::clamp_f(v, out.fmin, out.fmax);
        }
      }
    }
  }
}

#ifdef QSLIM_INT8_DW_VNNI
// ---------------------------------------------------------------------------------------------
// VNNI path.

// 64 bytes whose byte 4c + t is v_t[c] (c < 16): one channel's 4 taps per 32-bit lane.
#ifdef __AVX512VBMI__
alignas(64) constexpr uint8_t kInterleaveIdx[64] = {
    0,  16, 32, 48, 1,  17, 33, 49, 2,  18, 34, 50, 3,  19, 35, 51, 4,  20, 36, 52, 5,  21,
    37, 53, 6,  22, 38, 54, 7,  23, 39, 55, 8,  24, 40, 56, 9,  25, 41, 57, 10, 26, 42, 58,
    11, 27, 43, 59, 12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63};
#endif
inline __m512i interleave4(__m128i a, __m128i b, __m128i c, __m128i d) {
#ifdef __AVX512VBMI__
  __m512i v = _mm512_castsi128_si512(a);
  v = _mm512_inserti32x4(v, b, 1);
  v = _mm512_inserti32x4(v, c, 2);
  v = _mm512_inserti32x4(v, d, 3);
  return _mm512_permutexvar_epi8(_mm512_load_si512(kInterleaveIdx), v);
#else
  const __m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
  const __m128i cd_lo = _mm_unpacklo_epi8(c, d), cd_hi = _mm_unpackhi_epi8(c, d);
  __m512i v = _mm512_castsi128_si512(_mm_unpacklo_epi16(ab_lo, cd_lo));
  v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(ab_lo, cd_lo), 1);
  v = _mm512_inserti32x4(v, _mm_unpacklo_epi16(ab_hi, cd_hi), 2);
  return _mm512_inserti32x4(v, _mm_unpackhi_epi16(ab_hi, cd_hi), 3);
#endif
}

inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

struct FastPlan {
  const Int8ConvGeometry& g;
  const PackedDepthwiseWeights& w;
  int64_t C, OH, OW, U, ng;
  int64_t row_bytes;     // one interleaved row: [U][ng][OW][64]
  int64_t padded_bytes;  // one zero-point-padded input row, with slack for the reads past it
  uint8_t z;
};

// Interleaved chunks of input row xrow ([in_w][C]) for every (unit, tap group, output column).
// The row is first copied into `padded` with the zero point on both sides (and after the last
// column, where tap groups read up to 3 taps past the kernel: their weights are zero), so every
// chunk is 4 unmasked loads at fixed strides and one byte permute.
void build_row(const FastPlan& p, const uint8_t* xrow, uint8_t* padded, uint8_t* dst) {
  const Int8ConvGeometry& g = p.g;
  const int64_t C = p.C, PWC = g.pad_w * C, WC = g.in_w * C;
  std::memset(padded, p.z, static_cast<size_t>(PWC));
  std::memcpy(padded + PWC, xrow, static_cast<size_t>(WC));
  std::memset(padded + PWC + WC, p.z, static_cast<size_t>(p.padded_bytes - PWC - WC));
  const int64_t step = g.stride_w * C, tap = g.dilation_w * C, group = 4 * tap;
  const int64_t unit_stride = p.ng * p.OW * 64;
#ifdef __AVX512VBMI__
  if (C == kUnit && tap == kUnit) {
    // 4 neighbouring pixels of 16 channels are one contiguous 64-byte load.
    const __m512i idx = _mm512_load_si512(kInterleaveIdx);
    for (int64_t gr = 0; gr < p.ng; ++gr) {
      const uint8_t* src = padded + gr * group;
      uint8_t* d = dst + gr * p.OW * 64;
      for (int64_t ow = 0; ow < p.OW; ++ow, src += step, d += 64)
        _mm512_store_si512(d, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(src)));
    }
    return;
  }
#endif
  for (int64_t u = 0; u < p.U; ++u) {
    for (int64_t gr = 0; gr < p.ng; ++gr) {
      const uint8_t* src = padded + gr * group + u * kUnit;
      uint8_t* d = dst + u * unit_stride + gr * p.OW * 64;
      for (int64_t ow = 0; ow < p.OW; ++ow, src += step, d += 64) {
        _mm512_store_si512(d, interleave4(load16(src), load16(src + tap), load16(src + 2 * tap), load16(src + 3 * tap)));
      }
    }
  }
}

// Requantizes and stores one unit (16 channels) of one output pixel.
template <typename OutT>
inline void store_unit(const __m512 v, const int8_requant::Requant16& requant, __m512 fmin, __m512 fmax, bool full,
                       __mmask16 m, OutT* dst) {
  // Masked stores are slow on some CPUs (Zen 4): only the last unit of a row uses them.
  if constexpr (std::is_same_v<OutT, uint8_t>) {
    const __m128i q = requant(v);
    if (full) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), q);
    } else {
      _mm_mask_storeu_epi8(dst, m, q);
    }
  } else {
    const __m512 f = int8_requant::clamp16(v, fmin, fmax);
    if (full) {
      _mm512_storeu_ps(dst, f);
    } else {
      _mm512_mask_storeu_ps(dst, m, f);
    }
  }
}

// Units [u0, u0 + UB) of one output row, NT taps (kernel_h * ng) each, weights in registers. The
// UB accumulators of a pixel are independent, so their dependency chains (vpdpbusd, conversions,
// store) overlap instead of serializing pixel after pixel.
template <int NT, int UB, typename OutT>
void output_units(const FastPlan& p, const uint8_t* const* rows, const Int8Output& out, OutT* y, int64_t u0) {
  const int64_t ng = p.ng, OW = p.OW, ustride = ng * OW * 64;
  const int8_requant::Requant16 requant(out.zero_point, out.qmin, out.qmax);
  const __m512 fmin = _mm512_set1_ps(out.fmin), fmax = _mm512_set1_ps(out.fmax);
  __m512i wv[UB][NT], bias[UB];
  __m512 mult[UB];
  const uint8_t* src[NT];  // tap t of unit u0, output column 0
  for (int t = 0; t < NT; ++t) src[t] = rows[t / ng] + ((u0 * ng + t % ng) * OW) * 64;
  for (int i = 0; i < UB; ++i) {
    const int8_t* wu = p.w.interleaved.data() + (u0 + i) * NT * 64;
    for (int t = 0; t < NT; ++t) wv[i][t] = _mm512_loadu_si512(wu + t * 64);
    bias[i] = _mm512_loadu_si512(p.w.folded_bias.data() + (u0 + i) * kUnit);
    mult[i] = _mm512_loadu_ps(p.w.multiplier_padded.data() + (u0 + i) * kUnit);
  }
  const int64_t last = u0 + UB - 1;
  const bool last_full = p.C - last * kUnit >= kUnit;
  const __mmask16 m = int8_requant::tail_mask16(p.C - last * kUnit);
  for (int64_t ow = 0; ow < OW; ++ow) {
    OutT* yp = y + ow * p.C + u0 * kUnit;
#pragma GCC unroll 4
    for (int i = 0; i < UB; ++i) {
      __m512i acc = bias[i];
#pragma GCC unroll 10
      for (int t = 0; t < NT; ++t)
        acc = _mm512_dpbusd_epi32(acc, _mm512_load_si512(src[t] + i * ustride + ow * 64), wv[i][t]);
      const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult[i]);
      store_unit(v, requant, fmin, fmax, i + 1 < UB || last_full, m, yp + i * kUnit);
    }
  }
}

// One output row from the interleaved rows of its kernel rows: blocks of up to 4 units (2 for
// 10 taps) with NT = kernel_h * ng fixed at compile time, or any tap count one unit at a time
// with the weights read from memory (NT == 0).
template <int NT, typename OutT>
void output_row(const FastPlan& p, const uint8_t* const* rows, const Int8Output& out, OutT* y) {
  if constexpr (NT > 0) {
    constexpr int kMaxUb = NT <= 3 ? 4 : 2;
    for (int64_t u0 = 0; u0 < p.U; u0 += kMaxUb) {
      switch (std::min<int64_t>(kMaxUb, p.U - u0)) {
        case 1:
          output_units<NT, 1>(p, rows, out, y, u0);
          break;
        case 2:
          output_units<NT, 2>(p, rows, out, y, u0);
          break;
        case 3:
          if constexpr (kMaxUb >= 3) output_units<NT, 3>(p, rows, out, y, u0);
          break;
        default:
          if constexpr (kMaxUb >= 4) output_units<NT, 4>(p, rows, out, y, u0);
          break;
      }
    }
    return;
  }
  const int64_t kh = p.g.kernel_h, ng = p.ng, nt = kh * ng, OW = p.OW;
  const int8_requant::Requant16 requant(out.zero_point, out.qmin, out.qmax);
  const __m512 fmin = _mm512_set1_ps(out.fmin), fmax = _mm512_set1_ps(out.fmax);
  for (int64_t u = 0; u < p.U; ++u) {
    const int8_t* wu = p.w.interleaved.data() + u * nt * 64;
    const uint8_t* src[kMaxFastTaps];
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t gr = 0; gr < ng; ++gr) src[i * ng + gr] = rows[i] + ((u * ng + gr) * OW) * 64;
    const __m512i bias = _mm512_loadu_si512(p.w.folded_bias.data() + u * kUnit);
    const __m512 mult = _mm512_loadu_ps(p.w.multiplier_padded.data() + u * kUnit);
    const __mmask16 m = int8_requant::tail_mask16(p.C - u * kUnit);
    const bool full = p.C - u * kUnit >= kUnit;
    for (int64_t ow = 0; ow < OW; ++ow) {
      __m512i acc = bias;
      for (int64_t t = 0; t < nt; ++t)
        acc = _mm512_dpbusd_epi32(acc, _mm512_load_si512(src[t] + ow * 64), _mm512_loadu_si512(wu + t * 64));
      store_unit(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult), requant, fmin, fmax, full, m, y + ow * p.C + u * kUnit);
    }
  }
}

template <typename OutT>
void depthwise_rows_vnni(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                         const Int8Output& out, OutT* y, int64_t r0, int64_t r1) {
  const int64_t C = g.in_c, U = (C + kUnit - 1) / kUnit, ng = w.tap_groups_w, OW = g.out_w();
  // Input pixels a padded row must hold: the image's plus both paddings, and every tap group's
  // last pixel; the slack covers the last unit's 16-byte loads past a pixel's C channels.
  const int64_t pixels = std::max(g.in_w + 2 * g.pad_w, (OW - 1) * g.stride_w + (4 * ng - 1) * g.dilation_w + 1);
  const FastPlan p{g, w, C, g.out_h(), OW, U, ng, U * ng * OW * 64, pixels * C + 64,
                   static_cast<uint8_t>(w.in_zero_point)};
  const int64_t kh = g.kernel_h;
  // Layout: [padded input row][pad row][kh ring rows], all 64-byte aligned.
  const int64_t pbytes = (p.padded_bytes + 63) / 64 * 64;
  thread_local std::vector<uint8_t> buf;
  thread_local std::vector<int64_t> tags;
  const size_t need = static_cast<size_t>(pbytes + (kh + 1) * p.row_bytes + 64);
  if (buf.size() < need) buf.resize(need);
  tags.assign(static_cast<size_t>(kh), -1);
  uint8_t* base = buf.data() + ((64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64);
  uint8_t* padded = base;
  uint8_t* pad_row = base + pbytes;
  uint8_t* ring = pad_row + p.row_bytes;
  std::memset(pad_row, p.z, static_cast<size_t>(p.row_bytes));

  const uint8_t* rows[kMaxFastTaps];
  int64_t keys[kMaxFastTaps];
  bool slot_used[kMaxFastTaps];
  const int nt = static_cast<int>(kh * ng);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.OH, oh = r % p.OH;
    std::fill(slot_used, slot_used + kh, false);
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
      keys[i] = (ih < 0 || ih >= g.in_h) ? -1 : n * g.in_h + ih;
      rows[i] = nullptr;
      if (keys[i] < 0) {
        rows[i] = pad_row;
        continue;
      }
      for (int64_t s = 0; s < kh; ++s) {
        if (tags[s] == keys[i]) {
          rows[i] = ring + s * p.row_bytes;
          slot_used[s] = true;
        }
      }
    }
    for (int64_t i = 0; i < kh; ++i) {
      if (rows[i] != nullptr) continue;
      int64_t s = 0;
      while (slot_used[s]) ++s;  // kh slots for at most kh distinct rows: one is free
      slot_used[s] = true;
      tags[s] = keys[i];
      rows[i] = ring + s * p.row_bytes;
      build_row(p, x + keys[i] * g.in_w * C, padded, ring + s * p.row_bytes);
    }
    OutT* yr = y + r * OW * C;
    if (nt == 3) {
      output_row<3>(p, rows, out, yr);
    } else if (nt == 10) {
      output_row<10>(p, rows, out, yr);
    } else if (nt == 1) {
      output_row<1>(p, rows, out, yr);
    } else {
      output_row<0>(p, rows, out, yr);
    }
  }
}
#endif

template <typename OutT>
void depthwise_any(const char* op, const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                   const Int8Output& out, OutT* y) {
  int8_checks::geometry(op, g);
  QSLIM_CHECK(w.channels > 0 && static_cast<int64_t>(w.taps.size()) == w.channels * w.kernel_h * w.kernel_w, op,
              ": the depthwise weights are not packed");
  QSLIM_CHECK(g.in_c == w.channels && g.out_c == w.channels, op, ": geometry has ", g.in_c, " input and ", g.out_c,
              " output channels but the packed weights have ", w.channels,
              " (depthwise needs in_c == out_c == channels)");
  QSLIM_CHECK(g.kernel_h == w.kernel_h && g.kernel_w == w.kernel_w, op, ": geometry kernel ", g.kernel_h, "x",
              g.kernel_w, " but the packed weights are ", w.kernel_h, "x", w.kernel_w);
  if constexpr (std::is_same_v<OutT, uint8_t>) int8_checks::u8_output(op, out);
  const int64_t rows_total = g.batch * g.out_h();
  if (rows_total == 0) return;
  bool fast = false;
#ifdef QSLIM_INT8_DW_VNNI
  fast = !w.interleaved.empty() && g.kernel_h * w.tap_groups_w <= kMaxFastTaps;
#endif
  parallel_range(rows_total, row_grain(g, g.out_w()), [&](int64_t r0, int64_t r1) {
#ifdef QSLIM_INT8_DW_VNNI
    if (fast) {
      depthwise_rows_vnni(x, g, w, out, y, r0, r1);
      return;
    }
#endif
    (void)fast;
    depthwise_rows_portable(x, g, w, out, y, r0, r1);
  });
}

}  // namespace

PackedDepthwiseWeights pack_int8_depthwise_weights(const int8_t* w_c1hw, int64_t channels, int64_t kernel_h,
                                                   int64_t kernel_w, const int32_t* bias_q, int32_t in_zero_point,
                                                   const float* multiplier, int64_t multiplier_count, Int8Isa isa) {
  const char* op = "pack_int8_depthwise_weights";
  QSLIM_CHECK(channels > 0 && kernel_h > 0 && kernel_w > 0, op, ": weight [", channels, ", 1, ", kernel_h, ", ",
              kernel_w, "]: expected positive sizes");
  QSLIM_CHECK(w_c1hw != nullptr && multiplier != nullptr, op, ": weights and multipliers must be given");
  QSLIM_CHECK(multiplier_count == channels || multiplier_count == 1, op, ": ", multiplier_count,
              " multipliers for ", channels, " channels (expected ", channels, " or 1)");
  QSLIM_CHECK(in_zero_point >= 0 && in_zero_point <= 255, op, ": input zero point ", in_zero_point,
              " is outside the uint8 range [0, 255]");
  QSLIM_CHECK(int8_isa_supported(isa), op, ": ", int8_isa_name(isa), " is not supported by this CPU");
  const int64_t C = channels, T = kernel_h * kernel_w;
  PackedDepthwiseWeights p;
  p.channels = C;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.in_zero_point = in_zero_point;
  p.isa = isa;
  p.taps.resize(static_cast<size_t>(T * C));
  p.bias.assign(static_cast<size_t>(C), 0);
  p.multiplier.resize(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < T; ++t) p.taps[t * C + c] = w_c1hw[c * T + t];
    if (bias_q != nullptr) p.bias[c] = bias_q[c];
    p.multiplier[c] = multiplier[multiplier_count == 1 ? 0 : c];
  }
  // A build without the VNNI kernel (no -march with AVX512-VNNI) runs the portable loop instead.
  if (isa != Int8Isa::Avx512Vnni || !vnni_path_available()) return p;

  const int64_t U = (C + kUnit - 1) / kUnit, ng = (kernel_w + 3) / 4;
  p.tap_groups_w = ng;
  p.interleaved.assign(static_cast<size_t>(U * kernel_h * ng * 64), 0);
  p.folded_bias.assign(static_cast<size_t>(U * kUnit), 0);
  p.multiplier_padded.assign(static_cast<size_t>(U * kUnit), 0.0f);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t u = c / kUnit, lane = c % kUnit;
    int64_t sum = 0;
    for (int64_t i = 0; i < kernel_h; ++i) {
      for (int64_t j = 0; j < kernel_w; ++j) {
        const int8_t v = w_c1hw[(c * kernel_h + i) * kernel_w + j];
        sum += v;
        p.interleaved[(((u * kernel_h + i) * ng + j / 4) * kUnit + lane) * 4 + j % 4] = v;
      }
    }
    p.folded_bias[c] = static_cast<int32_t>(p.bias[c] - static_cast<int64_t>(in_zero_point) * sum);
    p.multiplier_padded[c] = p.multiplier[c];
  }
  return p;
}

void int8_depthwise_u8(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                       const Int8Output& out, uint8_t* y) {
  depthwise_any("int8_depthwise_u8", x, g, w, out, y);
}

void int8_depthwise_f32(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                        const Int8Output& out, float* y) {
  depthwise_any("int8_depthwise_f32", x, g, w, out, y);
}

}  // namespace qslim::cpu
