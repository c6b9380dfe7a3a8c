// Initial step sizes of the LSQ quanters (QUANT_SPEC §3).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "quant/quant_grid.h"

namespace qslim::quant {

enum class LsqInit : uint8_t {
  Lsq,      // s = 2 * mean|w| / sqrt(qmax)
  LsqPlus,  // s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1)   (sigma unbiased)
};
const char* lsq_init_name(LsqInit i);  // "lsq", "lsq_plus"

// One step per index of `axis` (axis -1: one for the whole tensor), floored at kScaleFloor.
std::vector<double> lsq_weight_init(const Tensor& w, int64_t axis, const QuantGrid& grid, LsqInit init);

// Projects a learnable step back to >= kScaleFloor in place (an optimizer step may push it through
// zero, which would make the next forward invalid); the gradient keeps pulling it back up.
void clamp_step_(const Tensor& step);

}  // namespace qslim::quant
