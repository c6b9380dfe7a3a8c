// AVX512-VNNI path of the INT8 GEMM: a 6-row x (up to 4 x 16)-column register block of int32
// accumulators fed by vpdpbusd (u8 A broadcast, 4 K values per 32-bit lane, x s8 packed W), with
// the output stage applied to the accumulators in registers. A is read through an IndirectA view
// (int8_gemm_kernels.h): a row pointer per output row plus K segments, so convolutions read their
// patches straight from the (padded) input. Compiled for these features whatever -march says; only
// called after a run-time CPU check (int8_gemm.cpp).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "core/cpu/int8_gemm_kernels.h"

// GCC 12 reports false -Wmaybe-uninitialized positives inside its own AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define QSLIM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace qslim::cpu::int8_detail {
namespace {

constexpr int kMr = 6;   // rows of A per register block
constexpr int kNr = 4;   // 16-column blocks per register block (24 accumulators + 4 W + 1 A of 32 zmm)
constexpr int64_t kMc = 192;  // rows of A kept hot in L2 while a panel of W sweeps over them

inline int32_t load_u32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct TileArgs {
  const int64_t* seg_off;
  int64_t segments, seg_groups, tail;  // tail: bytes of a last partial group (one segment only)
  const int8_t* w;
  int64_t wstride;
  int64_t row, col, last_cols;  // first C row and column; columns in the last 16-block (1..16)
};

// The output stage of one 16-column accumulator vector into C row `row`, columns col..col+cols.
template <OutKind KIND>
QSLIM_VNNI inline void store_vec(const OutputStage& o, __m512i acc, __m512i bias, __m512 mult, __m512 lo,
                                         __m512 hi, __m512i zp, int64_t row, int64_t col, bool full,
                                         __mmask16 mask) {
  if constexpr (KIND == OutKind::S32) {
    int32_t* d = static_cast<int32_t*>(o.c) + row * o.ldc + col;
    if (full) {
      _mm512_storeu_si512(d, acc);
    } else {
      _mm512_mask_storeu_epi32(d, mask, acc);
    }
    return;
  } else {
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, bias)), mult);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    if constexpr (KIND == OutKind::F32) {
      float* d = static_cast<float*>(o.c) + row * o.ldc + col;
      if (full) {
        _mm512_storeu_ps(d, v);
      } else {
        _mm512_mask_storeu_ps(d, mask, v);
      }
    } else {
      const __m512i q =
          _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
      const __m128i bytes = _mm512_cvtepi32_epi8(q);  // q is within [qmin, qmax]: truncation is exact
      uint8_t* d = static_cast<uint8_t*>(o.c) + row * o.ldc + col;
      if (full) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), bytes);
      } else {
        _mm_mask_storeu_epi8(d, mask, bytes);
      }
    }
  }
}

template <int MR, int NR, OutKind KIND>
QSLIM_VNNI inline void store_tile(const OutputStage& o, const TileArgs& t, const __m512i (&acc)[MR][NR]) {
  const __mmask16 last_mask = static_cast<__mmask16>((1u << t.last_cols) - 1u);
  __m512 lo, hi;
  if constexpr (KIND == OutKind::F32) {
    lo = _mm512_set1_ps(o.fmin);
    hi = _mm512_set1_ps(o.fmax);
  } else {
    lo = _mm512_set1_ps(o.qlo);
    hi = _mm512_set1_ps(o.qhi);
  }
  const __m512i zp = _mm512_set1_epi32(o.zero_point);
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j) {
    const int64_t col = t.col + 16 * j;
    const bool full = j + 1 < NR || t.last_cols == 16;
    const __mmask16 m = full ? __mmask16(0xFFFF) : last_mask;
    __m512i bias = _mm512_setzero_si512();
    __m512 mult = _mm512_setzero_ps();
    if constexpr (KIND != OutKind::S32) {
      bias = _mm512_maskz_loadu_epi32(m, o.bias + col);
      mult = _mm512_maskz_loadu_ps(m, o.multiplier + col);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) store_vec<KIND>(o, acc[i][j], bias, mult, lo, hi, zp, t.row + i, col, full, m);
  }
}

// Accumulates rows[0..MR) x the NR 16-column blocks of W over every segment, then stores. Every
// loop is unrolled explicitly: otherwise GCC keeps the accumulators in memory.
template <int MR, int NR>
QSLIM_VNNI void tile(const uint8_t* const* rows, const OutputStage& o, const TileArgs& t) {
  const uint8_t* r[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) r[i] = rows[i];
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const int8_t* wp = t.w;
  const int64_t ws = t.wstride;
  for (int64_t s = 0; s < t.segments; ++s) {
    const int64_t end = t.seg_off[s] + 4 * t.seg_groups;
    for (int64_t off = t.seg_off[s]; off < end; off += 4, wp += 64) {
      __m512i wv[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(wp + j * ws);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512i av = _mm512_set1_epi32(load_u32(r[i] + off));
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, wv[j]);
      }
    }
  }
  if (t.tail > 0) {
    // The last k % 4 values of the row, loaded masked (nothing past the row is read).
    const __mmask16 m = static_cast<__mmask16>((1u << t.tail) - 1u);
    const int64_t off = t.seg_off[0] + 4 * t.seg_groups;
    __m512i wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(wp + j * ws);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(m, r[i] + off));
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, wv[j]);
    }
  }
  switch (o.kind) {
    case OutKind::U8:
    case OutKind::S8:
      return store_tile<MR, NR, OutKind::U8>(o, t, acc);
    case OutKind::F32:
      return store_tile<MR, NR, OutKind::F32>(o, t, acc);
    case OutKind::S32:
      return store_tile<MR, NR, OutKind::S32>(o, t, acc);
  }
}

using TileFn = void (*)(const uint8_t* const*, const OutputStage&, const TileArgs&);

template <int MR, int... NRs>
constexpr auto row_of_tiles(std::integer_sequence<int, NRs...>) {
  return std::array<TileFn, sizeof...(NRs)>{&tile<MR, NRs + 1>...};
}
template <int... MRs>
constexpr auto tile_table(std::integer_sequence<int, MRs...>) {
  return std::array<std::array<TileFn, kNr>, sizeof...(MRs)>{
      row_of_tiles<MRs + 1>(std::make_integer_sequence<int, kNr>())...};
}
constexpr auto kTiles = tile_table(std::make_integer_sequence<int, kMr>());

// Direct kernel for 3-tap stride-1 kernel rows over 16 input and 16 output channels: the input
// dword of pixel iw, channels 4g..4g+3, feeds output pixels iw, iw-1, iw-2 (taps 0, 1, 2), so it is
// broadcast once for 3 vpdpbusd instead of once per vpdpbusd as in the GEMM tile above (N = 16
// leaves that tile one weight vector per broadcast). The 12 weight vectors of one kernel row stay
// in registers next to R <= 12 accumulators.
template <int R>
QSLIM_VNNI void strip_3x16(const uint8_t* p0, const int64_t* seg_off, int64_t segments, const int8_t* w,
                           const OutputStage& o, const TileArgs& t) {
  __m512i acc[R][1];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = _mm512_setzero_si512();
  for (int64_t s = 0; s < segments; ++s) {
    const uint8_t* row = p0 + seg_off[s];
    const int8_t* ws = w + s * 12 * 64;
    __m512i wv[3][4];
#pragma GCC unroll 4
    for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) wv[kw][g] = _mm512_loadu_si512(ws + (kw * 4 + g) * 64);
#pragma GCC unroll 16
    for (int iw = 0; iw < R + 2; ++iw) {
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        const __m512i b = _mm512_set1_epi32(load_u32(row + iw * 16 + 4 * g));
#pragma GCC unroll 4
        for (int kw = 0; kw < 3; ++kw) {
          const int ow = iw - kw;
          if (ow >= 0 && ow < R) acc[ow][0] = _mm512_dpbusd_epi32(acc[ow][0], b, wv[kw][g]);
        }
      }
    }
  }
  switch (o.kind) {
    case OutKind::U8:
    case OutKind::S8:
      return store_tile<R, 1, OutKind::U8>(o, t, acc);
    case OutKind::F32:
      return store_tile<R, 1, OutKind::F32>(o, t, acc);
    case OutKind::S32:
      return store_tile<R, 1, OutKind::S32>(o, t, acc);
  }
}

constexpr int kMaxStrip = 12;
using StripFn = void (*)(const uint8_t*, const int64_t*, int64_t, const int8_t*, const OutputStage&, const TileArgs&);
template <int... Rs>
constexpr auto strip_table(std::integer_sequence<int, Rs...>) {
  return std::array<StripFn, sizeof...(Rs)>{&strip_3x16<Rs + 1>...};
}
constexpr auto kStrips = strip_table(std::make_integer_sequence<int, kMaxStrip>());

}  // namespace

bool conv_3x16_applies(const PackedInt8Weights& w, const IndirectA& a, int64_t kernel_w, int64_t in_c) {
  return w.isa == Int8Isa::Avx512Vnni && w.n == 16 && kernel_w == 3 && in_c == 16 && a.col_step == 16 &&
         w.k == a.segments * 48;
}

void conv_rows_3x16_vnni(const IndirectA& a, int64_t rows, const PackedInt8Weights& w, const OutputStage& out) {
  const int64_t OW = a.row_len;
  const int64_t strips = (OW + kMaxStrip - 1) / kMaxStrip;
  TileArgs t;
  t.col = 0;
  t.last_cols = 16;
  const int8_t* wp = packed_base(w);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = a.base + r * a.row_step;
    for (int64_t sidx = 0; sidx < strips; ++sidx) {
      const int64_t ow0 = OW * sidx / strips, ow1 = OW * (sidx + 1) / strips;
      t.row = r * OW + ow0;
      kStrips[ow1 - ow0 - 1](row + ow0 * 16, a.seg_off, a.segments, wp, out, t);
    }
  }
}

void gemm_indirect_vnni(const IndirectA& a, const PackedInt8Weights& w, const OutputStage& out, int64_t m0,
                        int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = w.k, kp = round_up(k, 4);
  const int64_t block_bytes = kp * kVnniBlock;
  const int64_t seg_bytes = k / a.segments;
  const int8_t* base = packed_base(w);
  TileArgs t;
  t.seg_off = a.seg_off;
  t.segments = a.segments;
  t.seg_groups = seg_bytes / 4;
  t.tail = seg_bytes % 4;
  t.wstride = block_bytes;
  const uint8_t* rows[kMr];
  for (int64_t mc = m0; mc < m1; mc += kMc) {
    const int64_t mc_end = std::min(m1, mc + kMc);
    for (int64_t nc = n0; nc < n1; nc += kNr * kVnniBlock) {
      const int64_t nc_end = std::min(n1, nc + kNr * kVnniBlock);
      const int nr = static_cast<int>((nc_end - nc + kVnniBlock - 1) / kVnniBlock);
      t.w = base + (nc / kVnniBlock) * block_bytes;
      t.col = nc;
      t.last_cols = nc_end - nc - (nr - 1) * kVnniBlock;
      int64_t q = mc / a.row_len, rr = mc % a.row_len;
      for (int64_t m = mc; m < mc_end; m += kMr) {
        const int mr = static_cast<int>(std::min<int64_t>(kMr, mc_end - m));
        for (int i = 0; i < mr; ++i) {
          rows[i] = a.base + q * a.row_step + rr * a.col_step;
          if (++rr == a.row_len) rr = 0, ++q;
        }
        t.row = m;
        kTiles[mr - 1][nr - 1](rows, out, t);
      }
    }
  }
}

void gemm_block_vnni(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out, int64_t m0,
                     int64_t m1, int64_t n0, int64_t n1) {
  static constexpr int64_t kZero = 0;
  IndirectA view;
  view.base = a;
  view.row_len = 1;
  view.row_step = lda;
  view.seg_off = &kZero;
  view.segments = 1;
  gemm_indirect_vnni(view, w, out, m0, m1, n0, n1);
}

}  // namespace qslim::cpu::int8_detail
