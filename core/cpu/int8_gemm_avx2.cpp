// AVX2 path of the INT8 GEMM. vpmaddubsw would saturate its int16 pair sums on full-range u8 x s8
// inputs (255 * -128 * 2 < -32768), so this path is exact by widening: W is packed pre-widened to
// int16 pairs, a chunk of A rows is widened once into per-thread scratch, and vpmaddwd (int16 x
// int16 -> int32 pair sums, which cannot overflow here) + vpaddd accumulate a 6-row x 16-column
// register block. Compiled for AVX2 whatever -march says; only called after a run-time CPU check.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "core/cpu/int8_gemm_kernels.h"

#define QSLIM_AVX2 __attribute__((target("avx2,fma")))

namespace qslim::cpu::int8_detail {
namespace {

constexpr int kMr = 6;  // rows per register block
constexpr int kNr = 2;  // 8-column blocks per register block (12 accumulators + 2 W + 1 A of 16 ymm)
constexpr int64_t kMc = 96;

// acc tile [MR][16] int32 from widened A pairs (one int32 = two uint16 K values) and packed W. Every
// loop is unrolled explicitly: otherwise GCC keeps the accumulators in memory.
template <int MR, int NR>
QSLIM_AVX2 void tile(const int32_t* a, int64_t astride, int64_t pairs, const int16_t* w, int64_t wstride,
                     int32_t* t) {
  __m256i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
  for (int64_t p = 0; p < pairs; ++p) {
    __m256i wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
      wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * wstride + p * 16));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_set1_epi32(a[i * astride + p]);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(av, wv[j]));
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(t + i * 16 + j * 8), acc[i][j]);
}

using TileFn = void (*)(const int32_t*, int64_t, int64_t, const int16_t*, int64_t, int32_t*);

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

// Output stage of 8 full columns of one accumulator row.
QSLIM_AVX2 void store8(const OutputStage& o, int64_t row, int64_t col, const int32_t* acc_row) {
  const __m256i acc = _mm256_load_si256(reinterpret_cast<const __m256i*>(acc_row));
  if (o.kind == OutKind::S32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<int32_t*>(o.c) + row * o.ldc + col), acc);
    return;
  }
  const __m256i bias = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o.bias + col));
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc, bias)), _mm256_loadu_ps(o.multiplier + col));
  if (o.kind == OutKind::F32) {
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(o.fmin)), _mm256_set1_ps(o.fmax));
    _mm256_storeu_ps(static_cast<float*>(o.c) + row * o.ldc + col, v);
    return;
  }
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(o.qlo)), _mm256_set1_ps(o.qhi));
  v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(v), _mm256_set1_epi32(o.zero_point));
  // q is within [qmin, qmax], so the saturating packs below are exact.
  const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  if (o.kind == OutKind::U8)
    _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(o.c) + row * o.ldc + col),
                     _mm_packus_epi16(q16, q16));
  else
    _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<int8_t*>(o.c) + row * o.ldc + col),
                     _mm_packs_epi16(q16, q16));
}

// Rows [m, m + rows) of A as int32 pairs of uint16 (K padded with a zero to even length).
void widen_rows(const uint8_t* a, int64_t lda, int64_t rows, int64_t k, int64_t pairs, int32_t* dst) {
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* src = a + i * lda;
    int32_t* d = dst + i * pairs;
    for (int64_t p = 0; p < k / 2; ++p) d[p] = static_cast<int32_t>(src[2 * p]) | (static_cast<int32_t>(src[2 * p + 1]) << 16);
    if (k % 2) d[pairs - 1] = src[k - 1];
  }
}

}  // namespace

QSLIM_AVX2 void gemm_block_avx2(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out,
                                int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = w.k, pairs = round_up(k, 2) / 2;
  const int64_t block_elems = pairs * 2 * kAvx2Block;  // int16 per 8-column block
  const int16_t* base = reinterpret_cast<const int16_t*>(packed_base(w));
  thread_local std::vector<int32_t> widened;  // own buffer: callers may pass A from a ScratchSlot
  if (widened.size() < static_cast<size_t>(kMc * pairs)) widened.resize(kMc * pairs);
  alignas(32) int32_t t[kMr * 16];
  for (int64_t mc = m0; mc < m1; mc += kMc) {
    const int64_t mc_end = std::min(m1, mc + kMc);
    widen_rows(a + mc * lda, lda, mc_end - mc, k, pairs, widened.data());
    for (int64_t nc = n0; nc < n1; nc += kNr * kAvx2Block) {
      const int64_t nc_end = std::min(n1, nc + kNr * kAvx2Block);
      const int nr = static_cast<int>((nc_end - nc + kAvx2Block - 1) / kAvx2Block);
      const int16_t* wp = base + (nc / kAvx2Block) * block_elems;
      for (int64_t m = mc; m < mc_end; m += kMr) {
        const int mr = static_cast<int>(std::min<int64_t>(kMr, mc_end - m));
        kTiles[mr - 1][nr - 1](widened.data() + (m - mc) * pairs, pairs, pairs, wp, block_elems, t);
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) {
            const int64_t col = nc + j * kAvx2Block, cols = std::min<int64_t>(kAvx2Block, nc_end - col);
            const int32_t* acc = t + i * 16 + j * 8;
            if (cols == kAvx2Block)
              store8(out, m + i, col, acc);
            else
              for (int64_t c = 0; c < cols; ++c) store_one(out, m + i, col + c, acc[c]);
          }
      }
    }
  }
}

}  // namespace qslim::cpu::int8_detail
