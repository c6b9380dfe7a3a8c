// Integer grids, rounding and scale conventions shared by every quantizer (QUANT_SPEC.md §1).
//
// A quantizer stores a step size s (and an integer zero point z, 0 when symmetric):
//   q = clamp(round(x / s) + z, qmin, qmax),   x' = (q - z) * s.
// PaddleSlim speaks of a threshold T (the clipping abs-max) instead: s = T / qmax, which for the
// signed and narrow grids is the spec's s = T / (2^(b-1) - 1).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace qslim::quant {

// Which integers a b-bit quantizer may produce.
enum class GridKind : uint8_t {
  Signed,    // [-2^(b-1), 2^(b-1)-1]     activations (default)
  Narrow,    // [-(2^(b-1)-1), 2^(b-1)-1] symmetric weights (default)
  Unsigned,  // [0, 2^b-1]                post-ReLU activations, asymmetric schemes
};

enum class Rounding : uint8_t {
  HalfEven,  // ties to even: nearbyint/lrint and integer kernels (default)
  HalfAway,  // ties away from zero: std::round, PaddleSlim's dygraph quanters and LSQ (Paddle parity)
};

// Straight-through estimator of fake quantization's input gradient.
enum class SteMode : uint8_t {
  Clipped,   // dx = dy where qmin <= round(x/s)+z <= qmax, else 0 (default, as PyTorch)
  Identity,  // dx = dy everywhere (Paddle parity)
};

// Smallest step size used anywhere: an all-zero tensor gets s = kScaleFloor instead of 0, so
// x / s never divides by zero and results stay finite.
inline constexpr double kScaleFloor = 1e-8;
inline constexpr int kMinBits = 2;
inline constexpr int kMaxBits = 16;

// Throws "<who>: bits must be in 2..16, got <bits>" when out of range.
void check_bits(int bits, const std::string& who);

class QuantGrid {
 public:
  QuantGrid() : QuantGrid(8, GridKind::Signed) {}
  QuantGrid(int bits, GridKind kind);  // throws for bits outside 2..16

  int bits() const { return bits_; }
  GridKind kind() const { return kind_; }
  int64_t qmin() const { return qmin_; }
  int64_t qmax() const { return qmax_; }
  bool is_unsigned() const { return kind_ == GridKind::Unsigned; }
  // The narrowest integer dtype holding [qmin, qmax]: i8 (u8 for unsigned) up to 8 bits, i16 up
  // to 16 bits signed/narrow (15 bits unsigned), else i32.
  DType storage_dtype() const;
  std::string to_string() const;  // e.g. "int8 narrow [-127, 127]"

  bool operator==(const QuantGrid& o) const { return bits_ == o.bits_ && kind_ == o.kind_; }
  bool operator!=(const QuantGrid& o) const { return !(*this == o); }

 private:
  int bits_;
  GridKind kind_;
  int64_t qmin_, qmax_;
};

// 2^(b-1) - 1: the positive end of the symmetric grids, Paddle's "bin_cnt".
int64_t symmetric_qmax(int bits);

// max(s, kScaleFloor); throws for a negative or non-finite s (naming `who`).
double floor_scale(double s, const char* who = "quant");

// Paddle's threshold <-> step conversions: s = T / (2^(b-1)-1) (floored), T = s * (2^(b-1)-1).
double threshold_to_scale(double threshold, int bits);
double scale_to_threshold(double scale, int bits);
// Grid-aware forms: s = T / qmax (floored), T = s * qmax. Equal to the above for the signed and
// narrow grids; for the unsigned grid T is the top of [0, T], so s = T / (2^b - 1).
double threshold_to_scale(double threshold, const QuantGrid& grid);
double scale_to_threshold(double scale, const QuantGrid& grid);

// Names for configs, reports and messages; the parsers throw listing the allowed names.
const char* grid_kind_name(GridKind k);  // "signed", "narrow", "unsigned"
const char* rounding_name(Rounding r);   // "half_even", "half_away"
const char* ste_mode_name(SteMode m);    // "clipped", "identity"
GridKind grid_kind_from_name(const std::string& name);
Rounding rounding_from_name(const std::string& name);
SteMode ste_mode_from_name(const std::string& name);

// Rounding of one value. Both forms vectorise (rint is a single vrndscale under the default
// rounding mode); half-away corrects rint's ties, detected exactly since |v| - rint(|v|) is exact.
template <typename T>
inline T round_half_even(T v) {
  return std::nearbyint(v);
}
template <typename T>
inline T round_half_away(T v) {
  T a = std::fabs(v);
  T r = std::rint(a);
  r += (a - r == T(0.5)) ? T(1) : T(0);
  return std::copysign(r, v);
}
template <Rounding R, typename T>
inline T round_with(T v) {
  if constexpr (R == Rounding::HalfEven) {
    return round_half_even(v);
  } else {
    return round_half_away(v);
  }
}
inline double round_value(double v, Rounding r) {
  return r == Rounding::HalfEven ? round_half_even(v) : round_half_away(v);
}

}  // namespace qslim::quant
