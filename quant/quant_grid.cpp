#include "quant/quant_grid.h"

#include <sstream>

#include "core/error.h"

namespace qslim::quant {

void check_bits(int bits, const std::string& who) {
  QSLIM_CHECK(bits >= kMinBits && bits <= kMaxBits, who, ": bits must be in ", kMinBits, "..", kMaxBits, ", got ",
              bits);
}

QuantGrid::QuantGrid(int bits, GridKind kind) : bits_(bits), kind_(kind) {
  check_bits(bits, "QuantGrid");
  const int64_t half = int64_t{1} << (bits - 1);
  switch (kind) {
    case GridKind::Signed:
      qmin_ = -half;
      qmax_ = half - 1;
      break;
    case GridKind::Narrow:
      qmin_ = -(half - 1);
      qmax_ = half - 1;
      break;
    case GridKind::Unsigned:
      qmin_ = 0;
      qmax_ = (int64_t{1} << bits) - 1;
      break;
    default:
      QSLIM_FAIL("QuantGrid: unknown grid kind ", static_cast<int>(kind));
  }
}

DType QuantGrid::storage_dtype() const {
  if (qmin_ >= -128 && qmax_ <= 127) return DType::I8;
  if (qmin_ >= 0 && qmax_ <= 255) return DType::U8;
  if (qmin_ >= -32768 && qmax_ <= 32767) return DType::I16;
  return DType::I32;
}

std::string QuantGrid::to_string() const {
  std::ostringstream os;
  os << (kind_ == GridKind::Unsigned ? "uint" : "int") << bits_ << " " << grid_kind_name(kind_) << " [" << qmin_ << ", "
     << qmax_ << "]";
  return os.str();
}

int64_t symmetric_qmax(int bits) {
  check_bits(bits, "symmetric_qmax");
  return (int64_t{1} << (bits - 1)) - 1;
}

double floor_scale(double s, const char* who) {
  QSLIM_CHECK(std::isfinite(s) && s >= 0, who, ": step size must be finite and >= 0, got ", s);
  return s < kScaleFloor ? kScaleFloor : s;
}

double threshold_to_scale(double threshold, int bits) {
  return floor_scale(threshold / static_cast<double>(symmetric_qmax(bits)), "threshold_to_scale");
}

double scale_to_threshold(double scale, int bits) { return scale * static_cast<double>(symmetric_qmax(bits)); }

double threshold_to_scale(double threshold, const QuantGrid& grid) {
  return floor_scale(threshold / static_cast<double>(grid.qmax()), "threshold_to_scale");
}

double scale_to_threshold(double scale, const QuantGrid& grid) { return scale * static_cast<double>(grid.qmax()); }

const char* grid_kind_name(GridKind k) {
  switch (k) {
    case GridKind::Signed:
      return "signed";
    case GridKind::Narrow:
      return "narrow";
    case GridKind::Unsigned:
      return "unsigned";
  }
  return "?";
}

const char* rounding_name(Rounding r) { return r == Rounding::HalfEven ? "half_even" : "half_away"; }

const char* ste_mode_name(SteMode m) { return m == SteMode::Clipped ? "clipped" : "identity"; }

GridKind grid_kind_from_name(const std::string& name) {
  if (name == "signed") return GridKind::Signed;
  if (name == "narrow") return GridKind::Narrow;
  if (name == "unsigned") return GridKind::Unsigned;
  QSLIM_FAIL("unknown quantization grid '", name, "'; allowed: signed, narrow, unsigned");
}

Rounding rounding_from_name(const std::string& name) {
  if (name == "half_even") return Rounding::HalfEven;
  if (name == "half_away") return Rounding::HalfAway;
  QSLIM_FAIL("unknown rounding '", name, "'; allowed: half_even, half_away");
}

SteMode ste_mode_from_name(const std::string& name) {
  if (name == "clipped") return SteMode::Clipped;
  if (name == "identity") return SteMode::Identity;
  QSLIM_FAIL("unknown straight-through estimator '", name, "'; allowed: clipped, identity");
}

}  // namespace qslim::quant
