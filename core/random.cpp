#include "core/random.h"

#include <cmath>
#include <sstream>

#include "core/error.h"

namespace qslim {

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

std::string Generator::state() const {
  std::ostringstream os;
  os << engine_ << ' ' << has_spare_ << ' ' << std::hexfloat << spare_;
  return os.str();
}

void Generator::set_state(const std::string& s) {
  std::istringstream is(s);
  is >> engine_ >> has_spare_;
  std::string sp;
  is >> sp;
  QSLIM_CHECK(!is.fail() || !sp.empty(), "Generator::set_state: malformed generator state");
  spare_ = std::strtod(sp.c_str(), nullptr);
}

Generator& global_generator() {
  static Generator g(0x5eed);
  return g;
}

void manual_seed(uint64_t seed) { global_generator().seed(seed); }

}  // namespace qslim
