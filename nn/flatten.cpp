#include "nn/flatten.h"

namespace qslim::nn {

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
}

}  // namespace qslim::nn
