// Internal: splitting a flat run into its even and odd entries and merging them back, a vector pair
// at a time (the column phases of stride-2 kernels: for rows of even width, the even and odd
// columns of a whole plane are the even and odd entries of the flat plane).
#pragma once
#include <cstdint>

#include "core/cpu/simd.h"

namespace qslim::cpu {

// Lane indices {0, 2, 4, ...} + first and {0, n, 1, n+1, ...} + half for two-vector shuffles.
template <typename T>
struct Shuffle {
  using I = typename Vec<T>::index_t;
  using mask = typename Vec<T>::mask;
  static mask every_other(I first) { return lane_indices<T>() * 2 + first; }
  static mask interleave(I half) {
    const mask i = lane_indices<T>();
    return i / 2 + half + (i % 2) * static_cast<I>(Vec<T>::lanes);
  }
};

template <typename T>
inline typename Vec<T>::type shuffle2(typename Vec<T>::type a, typename Vec<T>::type b,
                                      typename Shuffle<T>::mask m) {
#if defined(__clang__)
  typename Vec<T>::type r;
  for (int64_t i = 0; i < Vec<T>::lanes; ++i) r[i] = m[i] < Vec<T>::lanes ? a[m[i]] : b[m[i] - Vec<T>::lanes];
  return r;
#else
  return __builtin_shuffle(a, b, m);
#endif
}

// even[k] = x[2k], odd[k] = x[2k + 1] for an even n; interleave is the inverse.
template <typename T>
void deinterleave(const T* x, int64_t n, T* even, T* odd) {
  constexpr int64_t L = Vec<T>::lanes;
  const auto me = Shuffle<T>::every_other(0), mo = Shuffle<T>::every_other(1);
  int64_t k = 0;
  for (; k + 2 * L <= n; k += 2 * L) {
    const auto a = vload(x + k), b = vload(x + k + L);
    vstore(even + k / 2, shuffle2<T>(a, b, me));
    vstore(odd + k / 2, shuffle2<T>(a, b, mo));
  }
  for (; k < n; k += 2) {
    even[k / 2] = x[k];
    odd[k / 2] = x[k + 1];
  }
}
template <typename T>
void interleave(const T* even, const T* odd, int64_t n, T* x) {
  constexpr int64_t L = Vec<T>::lanes;
  const auto lo = Shuffle<T>::interleave(0), hi = Shuffle<T>::interleave(L / 2);
  int64_t k = 0;
  for (; k + 2 * L <= n; k += 2 * L) {
    const auto a = vload(even + k / 2), b = vload(odd + k / 2);
    vstore(x + k, shuffle2<T>(a, b, lo));
    vstore(x + k + L, shuffle2<T>(a, b, hi));
  }
  for (; k < n; k += 2) {
    x[k] = even[k / 2];
    x[k + 1] = odd[k / 2];
  }
}

}  // namespace qslim::cpu
