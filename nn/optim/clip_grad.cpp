#include "nn/optim/clip_grad.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::optim {

namespace {

constexpr int64_t kGrain = 1 << 16;
constexpr int64_t kBlock = 4096;

// Sum of |x|^p over the tensor (p = inf: max |x|, NaN if any is NaN), accumulated in double. Eigen
// reductions are vectorised; a plain double accumulation loop is not (no reassociation).
template <typename T>
double norm_part(const T* x, int64_t n, double p) {
  using CMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  const bool inf = std::isinf(p);
  // Fixed-size parts combined in order: the result does not depend on the thread count.
  const int64_t parts = std::max<int64_t>(1, (n + kGrain - 1) / kGrain);
  std::vector<double> part(parts, 0.0);
  cpu::run_tasks(parts, [&](int64_t c) {
    const int64_t b = c * kGrain, e = std::min(n, b + kGrain);
    double acc = 0.0;
    for (int64_t s = b; s < e; s += kBlock) {
      CMap v(x + s, std::min<int64_t>(kBlock, e - s));
      if (inf) {
        const double m = static_cast<double>(v.abs().template maxCoeff<Eigen::PropagateNaN>());
        acc = (m > acc || std::isnan(m)) ? m : acc;
      } else if (p == 2.0)
        acc += v.template cast<double>().square().sum();
      else if (p == 1.0)
        acc += v.template cast<double>().abs().sum();
      else
        acc += v.template cast<double>().abs().pow(p).sum();
      if (std::isnan(acc)) break;
    }
    part[c] = acc;
  });
  double total = 0.0;
  for (double acc : part) {
    if (!inf)
      total += acc;
    else if (acc > total || std::isnan(acc))
      total = acc;
  }
  return total;
}

template <typename T>
void scale(T* x, int64_t n, double coef) {
  const T c = static_cast<T>(coef);
  cpu::parallel_range(n, kGrain, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= c;
  });
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  QSLIM_CHECK(norm_type >= 1.0, "clip_grad_norm_: norm_type must be >= 1 or infinity, got ", norm_type);
  QSLIM_CHECK(max_norm >= 0.0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    QSLIM_CHECK(params[i].defined(), "clip_grad_norm_: parameter ", i, " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    QSLIM_CHECK(g.is_contiguous(), "clip_grad_norm_: gradient of parameter ", i, " (shape ", shape_str(g.shape()),
                ") is not contiguous");
    grads.push_back(g);
  }
  const bool inf = std::isinf(norm_type);
  double acc = 0.0;
  for (const Tensor& g : grads) {
    double part = 0.0;
    QSLIM_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm_",
                         [&] { part = norm_part<scalar_t>(g.data<scalar_t>(), g.numel(), norm_type); });
    acc = inf ? ((part > acc || std::isnan(part)) ? part : acc) : acc + part;
  }
  const double total = inf ? acc : (norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type));
  QSLIM_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of order ", norm_type,
              " of ", grads.size(), " gradients is non-finite (", total, ")");
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const Tensor& g : grads) {
      QSLIM_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm_", [&] { scale<scalar_t>(g.data<scalar_t>(), g.numel(), coef); });
      g.bump_version();
    }
  }
  return total;
}

}  // namespace qslim::optim
