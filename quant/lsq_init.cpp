#include "quant/lsq_init.h"

#include <algorithm>
#include <cmath>

#include "quant/range_stats.h"

namespace qslim::quant {

const char* lsq_init_name(LsqInit i) { return i == LsqInit::Lsq ? "lsq" : "lsq_plus"; }

std::vector<double> lsq_weight_init(const Tensor& w, int64_t axis, const QuantGrid& grid, LsqInit init) {
  std::vector<double> s;
  if (init == LsqInit::Lsq) {
    for (double m : mean_abs(w, axis)) s.push_back(2.0 * m / std::sqrt(static_cast<double>(grid.qmax())));
  } else {
    const ChannelMoments mo = mean_std(w, axis, true);
    const double half_range = std::ldexp(1.0, grid.bits() - 1);
    for (size_t c = 0; c < mo.mean.size(); ++c)
      s.push_back(std::max(std::fabs(mo.mean[c] - 3 * mo.std[c]), std::fabs(mo.mean[c] + 3 * mo.std[c])) / half_range);
  }
  for (double& v : s) v = floor_scale(v, "lsq_weight_init");
  return s;
}

}  // namespace qslim::quant
