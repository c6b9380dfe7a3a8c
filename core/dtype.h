// Element types and the compile-time mapping between DType and C++ types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace qslim {

enum class DType : uint8_t { F32, F64, U8, I8, I16, I32, I64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "f64", "u8", ...
DType dtype_from_name(const std::string& name);  // accepts our names; throws listing the allowed ones
bool is_floating(DType t);

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::U8; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::I8; };
template <> struct dtype_of<int16_t> { static constexpr DType value = DType::I16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

}  // namespace qslim

// Runs the body with `scalar_t` bound to the C++ type of dtype `DT`.
#define QSLIM_DISPATCH_CASE(DT, T, ...) \
  case DT: {                            \
    using scalar_t = T;                 \
    __VA_ARGS__();                      \
    break;                              \
  }

#define QSLIM_DISPATCH_FLOAT(dtype, opname, ...)                                         \
  [&] {                                                                                  \
    switch (dtype) {                                                                     \
      QSLIM_DISPATCH_CASE(::qslim::DType::F32, float, __VA_ARGS__)                       \
      QSLIM_DISPATCH_CASE(::qslim::DType::F64, double, __VA_ARGS__)                      \
      default:                                                                           \
        QSLIM_FAIL(opname, ": expected a floating dtype (f32 or f64), got ", ::qslim::dtype_name(dtype)); \
    }                                                                                    \
  }()

#define QSLIM_DISPATCH_ALL(dtype, opname, ...)                          \
  [&] {                                                                 \
    switch (dtype) {                                                    \
      QSLIM_DISPATCH_CASE(::qslim::DType::F32, float, __VA_ARGS__)      \
      QSLIM_DISPATCH_CASE(::qslim::DType::F64, double, __VA_ARGS__)     \
      QSLIM_DISPATCH_CASE(::qslim::DType::U8, uint8_t, __VA_ARGS__)     \
      QSLIM_DISPATCH_CASE(::qslim::DType::I8, int8_t, __VA_ARGS__)      \
      QSLIM_DISPATCH_CASE(::qslim::DType::I16, int16_t, __VA_ARGS__)    \
      QSLIM_DISPATCH_CASE(::qslim::DType::I32, int32_t, __VA_ARGS__)    \
      QSLIM_DISPATCH_CASE(::qslim::DType::I64, int64_t, __VA_ARGS__)    \
      default:                                                          \
        QSLIM_FAIL(opname, ": unsupported dtype");                      \
    }                                                                   \
  }()
