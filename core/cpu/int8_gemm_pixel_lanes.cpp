// Pixel-lane VNNI kernel for convolutions with few output channels (int8_gemm_kernels.h): the
// register-blocked GEMM puts output channels in the 16 lanes, which leaves most lanes idle when a
// conv has 6 of them (LeNet's first conv). Here the lanes are 16 neighbouring output pixels of one
// output row: their 4-byte K groups overlap in the input row (pixel stride <= 4 bytes), so one
// 64-byte load and one byte permute give all 16, and each output channel's 4 weights are a
// broadcast. The output stage is the GEMM's, followed by a byte transpose to NHWC (uint8 only).
// A 2x2 stride-2 max pool can be fused: it takes the max of the int32 accumulators of two rows and
// of neighbouring lanes, and only the pooled map is requantized and stored.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "core/cpu/int8_gemm_kernels.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define QSLIM_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))

namespace qslim::cpu::int8_detail {
namespace {

inline int32_t load_u32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Where the 4 K values of one group come from: K runs through the kernel rows' runs back to back
// (w.k / segments bytes each, padded or not), so a group lies in one run or straddles two (runs of
// >= 3 bytes). Lane p reads byte index[4p + t] of (first 64 bytes at off1 | 64 bytes at off2), both
// relative to the lane block's first pixel.
struct LaneGroup {
  int64_t off1, off2;  // off2 < 0: the group lies in one run
  __m512i index;
};

// Accumulators of 32 pixels (two blocks of 16 lanes) x NO output channels of one output row, from
// ow0 on, starting from the packed bias (acc + bias wraps exactly as the GEMM's sum).
template <int NO>
QSLIM_VBMI inline void accumulate32(const LaneGroup* groups, int64_t ngroups, int64_t px, const uint8_t* row,
                                    int64_t ow0, const int8_t* w, const OutputStage& o, __m512i (&acc)[2][NO]) {
#pragma GCC unroll 8
  for (int c = 0; c < NO; ++c) acc[0][c] = acc[1][c] = _mm512_set1_epi32(o.bias[c]);
  const uint8_t* src = row + ow0 * px;
  const int8_t* wg = w;
  for (int64_t gi = 0; gi < ngroups; ++gi, wg += 64) {
    const LaneGroup& lg = groups[gi];
    __m512i x0, x1;
    if (lg.off2 < 0) {
      x0 = _mm512_permutexvar_epi8(lg.index, _mm512_loadu_si512(src + lg.off1));
      x1 = _mm512_permutexvar_epi8(lg.index, _mm512_loadu_si512(src + 16 * px + lg.off1));
    } else {
      x0 = _mm512_permutex2var_epi8(_mm512_loadu_si512(src + lg.off1), lg.index, _mm512_loadu_si512(src + lg.off2));
      x1 = _mm512_permutex2var_epi8(_mm512_loadu_si512(src + 16 * px + lg.off1), lg.index,
                                    _mm512_loadu_si512(src + 16 * px + lg.off2));
    }
#pragma GCC unroll 8
    for (int c = 0; c < NO; ++c) {
      const __m512i wv = _mm512_set1_epi32(load_u32(wg + 4 * c));
      acc[0][c] = _mm512_dpbusd_epi32(acc[0][c], x0, wv);
      acc[1][c] = _mm512_dpbusd_epi32(acc[1][c], x1, wv);
    }
  }
}

// Requantizes 16 pixel lanes x NO channels and stores the first `valid` pixels at d (NHWC, ldc == NO).
template <int NO>
QSLIM_VBMI inline void store16(const __m512i (&acc)[NO], int64_t valid, const OutputStage& o, uint8_t* d,
                               const __m512i (&tidx)[2]) {
  const __m512 lo = _mm512_set1_ps(o.qlo), hi = _mm512_set1_ps(o.qhi);
  const __m512i zp = _mm512_set1_epi32(o.zero_point);
  __m512i q[8];
#pragma GCC unroll 8
  for (int c = 0; c < NO; ++c) {
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[c]), _mm512_set1_ps(o.multiplier[c]));
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    q[c] = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
  }
#pragma GCC unroll 8
  for (int c = NO; c < 8; ++c) q[c] = _mm512_setzero_si512();
  // q is within [qmin, qmax] (uint8), so the saturating packs are exact. Byte 16 (p / 4) + 4 c + p % 4
  // of lo4 is channel c < 4 of pixel p (the packs work per 128-bit lane); hi4 holds channels 4..7.
  const __m512i lo4 = _mm512_packus_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
  const __m512i hi4 = _mm512_packus_epi16(_mm512_packs_epi32(q[4], q[5]), _mm512_packs_epi32(q[6], q[7]));
  const int64_t bytes = valid * NO;
  const __m512i first = _mm512_permutex2var_epi8(lo4, tidx[0], hi4);
  auto mask = [](int64_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; };
  _mm512_mask_storeu_epi8(d, mask(bytes), first);
  if (bytes > 64) _mm512_mask_storeu_epi8(d + 64, mask(bytes - 64), _mm512_permutex2var_epi8(lo4, tidx[1], hi4));
}

// The 2x1 max of 32 pixel lanes: lane j of the result is max(pixel 2j, pixel 2j + 1).
template <int NO>
QSLIM_VBMI inline void pair_max(const __m512i (&acc)[2][NO], __m512i (&out)[NO]) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
#pragma GCC unroll 8
  for (int c = 0; c < NO; ++c)
    out[c] = _mm512_max_epi32(_mm512_permutex2var_epi32(acc[0][c], even, acc[1][c]),
                              _mm512_permutex2var_epi32(acc[0][c], odd, acc[1][c]));
}

// Output rows [0, rows) of the conv, or with Pool2 of its 2x2 stride-2 max pool (conv rows
// [0, 2 rows), pooled width row_len / 2). Pooling the accumulators is exact as the requantization
// is monotone (every multiplier positive: conv_rows_pixel_lanes_maxpool2's precondition).
template <int NO, bool Pool2>
QSLIM_VBMI void rows_impl(const IndirectA& a, int64_t rows, const PackedInt8Weights& w, const OutputStage& o) {
  const int64_t OW = a.row_len, px = a.col_step, run = w.k / a.segments;
  const int64_t ngroups = (w.k + 3) / 4;
  thread_local std::vector<LaneGroup> groups;
  groups.resize(static_cast<size_t>(ngroups));
  for (int64_t gi = 0; gi < ngroups; ++gi) {
    const int64_t k0 = 4 * gi, s0 = k0 / run, rem0 = k0 % run;
    LaneGroup& lg = groups[gi];
    lg.off1 = a.seg_off[s0] + rem0;
    lg.off2 = -1;
    alignas(64) uint8_t idx[64];
    for (int t = 0; t < 4; ++t) {
      const int64_t k = std::min(k0 + t, w.k - 1);  // past K: any byte (its weight is 0)
      const int64_t s = k / run, rem = k % run;
      for (int p = 0; p < 16; ++p) {
        if (s == s0) {
          idx[4 * p + t] = static_cast<uint8_t>(p * px + rem - rem0);
        } else {
          lg.off2 = a.seg_off[s];
          idx[4 * p + t] = static_cast<uint8_t>(64 + p * px + rem);
        }
      }
    }
    lg.index = _mm512_load_si512(idx);
  }
  alignas(64) uint8_t t_bytes[128];
  for (int j = 0; j < 128; ++j) {
    const int p = j / NO, c = j % NO;
    const int lane_byte = 16 * (p / 4) + 4 * (c % 4) + p % 4;
    t_bytes[j] = static_cast<uint8_t>(p < 16 ? (c < 4 ? lane_byte : 64 + lane_byte) : 0);
  }
  const __m512i tidx[2] = {_mm512_load_si512(t_bytes), _mm512_load_si512(t_bytes + 64)};
  const int8_t* wp = packed_base(w);
  uint8_t* y = static_cast<uint8_t*>(o.c);
  __m512i acc[2][NO];
  if constexpr (!Pool2) {
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = a.base + r * a.row_step;
      uint8_t* yr = y + r * OW * o.ldc;
      for (int64_t ow0 = 0; ow0 < OW; ow0 += 32) {
        accumulate32<NO>(groups.data(), ngroups, px, row, ow0, wp, o, acc);
        store16<NO>(acc[0], std::min<int64_t>(16, OW - ow0), o, yr + ow0 * o.ldc, tidx);
        if (OW - ow0 > 16) store16<NO>(acc[1], std::min<int64_t>(16, OW - ow0 - 16), o, yr + (ow0 + 16) * o.ldc, tidx);
      }
    }
  } else {
    const int64_t PW = OW / 2;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* top = a.base + 2 * r * a.row_step;
      uint8_t* yr = y + r * PW * o.ldc;
      for (int64_t ow0 = 0; ow0 < 2 * PW; ow0 += 32) {
        __m512i pooled[NO], lower[NO];
        accumulate32<NO>(groups.data(), ngroups, px, top, ow0, wp, o, acc);
        pair_max<NO>(acc, pooled);
        accumulate32<NO>(groups.data(), ngroups, px, top + a.row_step, ow0, wp, o, acc);
        pair_max<NO>(acc, lower);
#pragma GCC unroll 8
        for (int c = 0; c < NO; ++c) pooled[c] = _mm512_max_epi32(pooled[c], lower[c]);
        store16<NO>(pooled, std::min<int64_t>(16, PW - ow0 / 2), o, yr + ow0 / 2 * o.ldc, tidx);
      }
    }
  }
}

using RowsFn = void (*)(const IndirectA&, int64_t, const PackedInt8Weights&, const OutputStage&);
constexpr RowsFn kRows[2][8] = {
    {&rows_impl<1, false>, &rows_impl<2, false>, &rows_impl<3, false>, &rows_impl<4, false>, &rows_impl<5, false>,
     &rows_impl<6, false>, &rows_impl<7, false>, &rows_impl<8, false>},
    {&rows_impl<1, true>, &rows_impl<2, true>, &rows_impl<3, true>, &rows_impl<4, true>, &rows_impl<5, true>,
     &rows_impl<6, true>, &rows_impl<7, true>, &rows_impl<8, true>}};

}  // namespace

bool pixel_lanes_supported() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
                         __builtin_cpu_supports("avx512vbmi");
  return ok;
}

void conv_rows_pixel_lanes(const IndirectA& a, int64_t rows, const PackedInt8Weights& w, const OutputStage& out) {
  kRows[0][w.n - 1](a, rows, w, out);
}

void conv_rows_pixel_lanes_maxpool2(const IndirectA& a, int64_t rows, const PackedInt8Weights& w,
                                    const OutputStage& out) {
  kRows[1][w.n - 1](a, rows, w, out);
}

}  // namespace qslim::cpu::int8_detail
