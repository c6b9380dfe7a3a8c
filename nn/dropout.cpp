#include "nn/dropout.h"

#include <sstream>

#include "autograd/ops_norm.h"

namespace qslim::nn {

Dropout::Dropout(double p, Generator* gen) : p_(p), gen_(gen) {
  QSLIM_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), gen_); }

std::string Dropout::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p_;
  return os.str();
}

}  // namespace qslim::nn
