// Internal: the requantization step shared by the INT8 depthwise, pooling and element-wise kernels
// (int8_conv.h), scalar and AVX-512 forms that give bit-identical results:
//   q = clamp(nearbyint(v) + zp, qmin, qmax)   computed in float, so a huge |v| saturates to the
//                                             bound instead of wrapping through int32.
// nearbyint rounds half to even (the default FP environment), as the GEMM's output stage does.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define QSLIM_INT8_AVX512 1
#endif

namespace qslim::cpu::int8_requant {

// `x > lo ? x : lo` is what max_ps computes (NaN gives lo), so both forms agree on every input.
inline float clamp_f(float x, float lo, float hi) {
  x = x > lo ? x : lo;
  return x < hi ? x : hi;
}

inline uint8_t requant_u8(float v, float zp, float qmin, float qmax) {
  return static_cast<uint8_t>(static_cast<int32_t>(clamp_f(std::nearbyint(v) + zp, qmin, qmax)));
}

#ifdef QSLIM_INT8_AVX512
inline __m512 clamp16(__m512 x, __m512 lo, __m512 hi) { return _mm512_min_ps(_mm512_max_ps(x, lo), hi); }

// 16 float values -> 16 uint8 (in the low 128 bits). Clamping to [qmin - zp, qmax - zp] before
// rounding equals clamping after (the bounds are integers) and keeps the int32 conversion in range;
// cvtps2dq rounds half to even like nearbyint.
struct Requant16 {
  __m512 lo, hi;  // qmin - zp, qmax - zp
  __m512i zp;
  Requant16(int32_t zero_point, int32_t qmin, int32_t qmax)
      : lo(_mm512_set1_ps(static_cast<float>(qmin - zero_point))),
        hi(_mm512_set1_ps(static_cast<float>(qmax - zero_point))),
        zp(_mm512_set1_epi32(zero_point)) {}
  __m128i operator()(__m512 v) const {
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(clamp16(v, lo, hi)), zp);
#ifdef __AVX512VBMI__
    // byte 0 of every lane (the value, now in [0, 255]): one permute instead of vpmovdb's two uops
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3C383430, 0x2C282420, 0x1C181410,
                                         0x0C080400);
    return _mm512_castsi512_si128(_mm512_permutexvar_epi8(idx, q));
#else
    return _mm512_cvtepi32_epi8(q);
#endif
  }
};

inline __mmask16 tail_mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
inline __mmask64 tail_mask64(int64_t n) { return n >= 64 ? ~__mmask64(0) : ((__mmask64(1) << n) - 1); }
#endif

}  // namespace qslim::cpu::int8_requant
