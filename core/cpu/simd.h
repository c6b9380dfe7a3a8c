// Internal: one 64-byte vector of T through the GCC/Clang vector extension (one AVX-512
// register, or two AVX2 registers on machines without AVX-512), with unaligned load/store.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace qslim::cpu {

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  // Same-width integers: lane indices, shuffle masks and comparison results.
  using index_t = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef index_t mask __attribute__((vector_size(64)));
  static constexpr int64_t lanes = 64 / sizeof(T);
};

// {0, 1, ..., lanes - 1}
template <typename T>
inline typename Vec<T>::mask lane_indices() {
  typename Vec<T>::mask m;
  for (int64_t i = 0; i < Vec<T>::lanes; ++i) m[i] = static_cast<typename Vec<T>::index_t>(i);
  return m;
}

template <typename T>
inline typename Vec<T>::type vload(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
inline void vstore(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof v);
}

// One broadcast (GCC folds it into the FMA as a {1to16} memory operand). `Vec{} + s` would
// compile to a scalar add plus a register broadcast, since 0 + -0 is not -0; s - 0 is s exactly.
template <typename T>
inline typename Vec<T>::type vsplat(T s) {
  return s - typename Vec<T>::type{};
}

template <typename T>
inline T vsum(typename Vec<T>::type v) {
  T s = 0;
  for (int64_t i = 0; i < Vec<T>::lanes; ++i) s += v[i];
  return s;
}

}  // namespace qslim::cpu
