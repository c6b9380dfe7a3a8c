#include "quant/absmax_observer.h"

#include <algorithm>

#include "quant/range_stats.h"

namespace qslim::quant {

AbsmaxObserver::AbsmaxObserver(const QuanterOptions& options) : TensorObserver(options, "AbsmaxObserver") {}

void AbsmaxObserver::observe(const Tensor& x) { max_ = std::max(max_, abs_max(x)); }

}  // namespace qslim::quant
