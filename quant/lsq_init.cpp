#include "quant/lsq_init.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
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

void clamp_step_(const Tensor& step) {
  NoGradGuard no_grad;
  bool changed = false;
  QSLIM_DISPATCH_FLOAT(step.dtype(), "lsq step", [&] {
    scalar_t* p = step.data<scalar_t>();
    for (int64_t i = 0, n = step.numel(); i < n; ++i)
      if (!(p[i] >= static_cast<scalar_t>(kScaleFloor))) {
        p[i] = static_cast<scalar_t>(kScaleFloor);
        changed = true;
      }
  });
  if (changed) step.bump_version();
}

}  // namespace qslim::quant
