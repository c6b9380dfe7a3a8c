// AVX512-VNNI path of the INT8 GEMM: a 6-row x (up to 4 x 16)-column register block of int32
// accumulators fed by vpdpbusd (u8 A broadcast, 4 K values per 32-bit lane, x s8 packed W), then
// the fused output stage on 16 columns at a time. Compiled for these features whatever -march says;
// only called after a run-time CPU check (int8_gemm.cpp).
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

// acc tile [MR][16 * NR] int32 (row stride 64) for rows a..a+MR over the first 4 * groups K values,
// columns of the NR 16-blocks starting at w. Every loop is unrolled explicitly: otherwise GCC keeps
// the accumulators in memory.
template <int MR, int NR>
QSLIM_VNNI void tile_body(const uint8_t* a, int64_t lda, int64_t groups, const int8_t* w, int64_t wstride,
                          int32_t* t) {
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(w + j * wstride + g * 64);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(load_u32(a + i * lda + 4 * g));
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, wv[j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) _mm512_store_si512(t + i * 64 + j * 16, acc[i][j]);
}

// Adds the last k % 4 K values (copied into a zeroed lane, never read past the row) to the tile.
template <int MR, int NR>
QSLIM_VNNI void tile_tail(const uint8_t* a, int64_t lda, int64_t rest, const int8_t* w, int64_t wstride,
                          int32_t* t) {
  for (int i = 0; i < MR; ++i) {
    int32_t last = 0;
    std::memcpy(&last, a + i * lda, static_cast<size_t>(rest));
    const __m512i av = _mm512_set1_epi32(last);
    for (int j = 0; j < NR; ++j) {
      const __m512i acc = _mm512_load_si512(t + i * 64 + j * 16);
      _mm512_store_si512(t + i * 64 + j * 16, _mm512_dpbusd_epi32(acc, av, _mm512_loadu_si512(w + j * wstride)));
    }
  }
}

template <int MR, int NR>
QSLIM_VNNI void tile(const uint8_t* a, int64_t lda, int64_t k, const int8_t* w, int64_t wstride, int32_t* t) {
  const int64_t groups = k / 4;
  tile_body<MR, NR>(a, lda, groups, w, wstride, t);
  if (const int64_t rest = k - 4 * groups) tile_tail<MR, NR>(a + 4 * groups, lda, rest, w + groups * 64, wstride, t);
}

using TileFn = void (*)(const uint8_t*, int64_t, int64_t, const int8_t*, int64_t, int32_t*);

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

// Output stage of `cols` (<= 16) columns of one accumulator row.
QSLIM_VNNI void store16(const OutputStage& o, int64_t row, int64_t col, int64_t cols, const int32_t* acc_row) {
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  const __m512i acc = _mm512_load_si512(acc_row);
  if (o.kind == OutKind::S32) {
    _mm512_mask_storeu_epi32(static_cast<int32_t*>(o.c) + row * o.ldc + col, mask, acc);
    return;
  }
  const __m512i bias = _mm512_maskz_loadu_epi32(mask, o.bias + col);
  const __m512 mult = _mm512_maskz_loadu_ps(mask, o.multiplier + col);
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, bias)), mult);
  if (o.kind == OutKind::F32) {
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(o.fmin)), _mm512_set1_ps(o.fmax));
    _mm512_mask_storeu_ps(static_cast<float*>(o.c) + row * o.ldc + col, mask, v);
    return;
  }
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(o.qlo)), _mm512_set1_ps(o.qhi));
  const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                     _mm512_set1_epi32(o.zero_point));
  const __m128i bytes = _mm512_cvtepi32_epi8(q);  // values are already within [qmin, qmax]
  if (o.kind == OutKind::U8)
    _mm_mask_storeu_epi8(static_cast<uint8_t*>(o.c) + row * o.ldc + col, mask, bytes);
  else
    _mm_mask_storeu_epi8(static_cast<int8_t*>(o.c) + row * o.ldc + col, mask, bytes);
}

}  // namespace

QSLIM_VNNI void gemm_block_vnni(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out,
                                int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = w.k, kp = round_up(k, 4);
  const int64_t block_bytes = kp * kVnniBlock;
  const int8_t* base = packed_base(w);
  alignas(64) int32_t t[kMr * kNr * 16];
  for (int64_t mc = m0; mc < m1; mc += kMc) {
    const int64_t mc_end = std::min(m1, mc + kMc);
    for (int64_t nc = n0; nc < n1; nc += kNr * kVnniBlock) {
      const int64_t nc_end = std::min(n1, nc + kNr * kVnniBlock);
      const int nr = static_cast<int>((nc_end - nc + kVnniBlock - 1) / kVnniBlock);
      const int8_t* wp = base + (nc / kVnniBlock) * block_bytes;
      for (int64_t m = mc; m < mc_end; m += kMr) {
        const int mr = static_cast<int>(std::min<int64_t>(kMr, mc_end - m));
        kTiles[mr - 1][nr - 1](a + m * lda, lda, k, wp, block_bytes, t);
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) {
            const int64_t col = nc + j * kVnniBlock;
            store16(out, m + i, col, std::min<int64_t>(kVnniBlock, nc_end - col), t + i * 64 + j * 16);
          }
      }
    }
  }
}

}  // namespace qslim::cpu::int8_detail
