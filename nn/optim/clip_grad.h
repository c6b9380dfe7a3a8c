// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
#pragma once
#include <limits>
#include <vector>

#include "core/tensor.h"

namespace qslim::optim {

// Total norm of all gradients taken together (parameters without a gradient are skipped); when it
// exceeds max_norm every gradient is scaled by max_norm / (total + 1e-6). norm_type is 2 (default),
// any p >= 1, or infinity. Returns the total norm before clipping. Throws when the norm is not finite
// and error_if_nonfinite is set.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

}  // namespace qslim::optim
