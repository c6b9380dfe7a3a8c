#include "nn/optim/adam.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::optim {

namespace {

constexpr int64_t kGrain = 1 << 15;
constexpr int64_t kBlock = 1024;

struct AdamScalars {
  double lr, weight_decay, beta1, beta2, eps, step_size, bc2_sqrt;
  bool decoupled, amsgrad;
};

// Processes cache-sized blocks with Eigen arrays: Eigen vectorises sqrt, which a plain loop does not
// get under -fmath-errno, and each block stays in L1 between the three passes.
template <typename T>
void adam_update(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const AdamScalars& s) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  using CMap = Eigen::Map<const Array>;
  const T decay = static_cast<T>(1.0 - s.lr * s.weight_decay), wd = static_cast<T>(s.weight_decay);
  const T a1 = static_cast<T>(1.0 - s.beta1), b2 = static_cast<T>(s.beta2), a2 = static_cast<T>(1.0 - s.beta2);
  const T eps = static_cast<T>(s.eps), step_size = static_cast<T>(s.step_size), bc2 = static_cast<T>(s.bc2_sqrt);
  const bool decay_p = s.decoupled && s.weight_decay != 0.0, l2 = !s.decoupled && s.weight_decay != 0.0;
  cpu::parallel_range(n, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) T gbuf[kBlock];
    for (int64_t b = begin; b < end; b += kBlock) {
      const Eigen::Index len = std::min<int64_t>(kBlock, end - b);
      Map P(p + b, len), M(m + b, len), V(v + b, len);
      if (decay_p) P *= decay;
      const T* gp = g + b;
      if (l2) {
        Map(gbuf, len) = CMap(g + b, len) + wd * P;
        gp = gbuf;
      }
      CMap G(gp, len);
      M += a1 * (G - M);
      V = b2 * V + a2 * G * G;
      if (vmax) {
        Map VM(vmax + b, len);
        VM = VM.max(V);
        P -= step_size * M / (VM.sqrt() / bc2 + eps);
      } else {
        P -= step_size * M / (V.sqrt() / bc2 + eps);
      }
    }
  });
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, const GroupOptions& options) {
  add_param_group(ParamGroup{std::move(params), options});
}

Adam::Adam(std::vector<ParamGroup> groups) { add_groups(std::move(groups)); }

void Adam::add_groups(std::vector<ParamGroup> groups) {
  QSLIM_CHECK(!groups.empty(), name(), ": no parameter groups given");
  for (ParamGroup& g : groups) add_param_group(std::move(g));
}

AdamW::AdamW(std::vector<Tensor> params, const GroupOptions& options) : Adam(true) {
  add_param_group(ParamGroup{std::move(params), options});
}

AdamW::AdamW(std::vector<ParamGroup> groups) : Adam(true) { add_groups(std::move(groups)); }

void Adam::validate(const GroupOptions& o) const {
  QSLIM_CHECK(o.lr >= 0.0, name(), ": lr must be >= 0, got ", o.lr);
  QSLIM_CHECK(o.eps >= 0.0, name(), ": eps must be >= 0, got ", o.eps);
  QSLIM_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, name(), ": beta1 must be in [0, 1), got ", o.beta1);
  QSLIM_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, name(), ": beta2 must be in [0, 1), got ", o.beta2);
  QSLIM_CHECK(o.weight_decay >= 0.0, name(), ": weight_decay must be >= 0, got ", o.weight_decay);
}

std::vector<std::string> Adam::buffer_names(const GroupOptions& o) const {
  if (o.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

void Adam::step() {
  NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const GroupOptions& o = groups_[gi].options;
    const size_t num_buffers = buffer_names(o).size();
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      Tensor g = grad_of(p, "Adam::step");
      if (!g.defined()) continue;
      ParamState& st = state_for(gi, i, num_buffers);
      ++st.step;
      const double t = static_cast<double>(st.step);
      AdamScalars s{o.lr, o.weight_decay, o.beta1, o.beta2, o.eps,
                    o.lr / (1.0 - std::pow(o.beta1, t)), std::sqrt(1.0 - std::pow(o.beta2, t)), decoupled_,
                    o.amsgrad};
      QSLIM_DISPATCH_FLOAT(p.dtype(), "Adam::step", [&] {
        scalar_t* vmax = o.amsgrad ? st.buffers[2].data<scalar_t>() : nullptr;
        adam_update<scalar_t>(p.data<scalar_t>(), g.data<scalar_t>(), st.buffers[0].data<scalar_t>(),
                              st.buffers[1].data<scalar_t>(), vmax, p.numel(), s);
      });
      p.bump_version();
    }
  }
}

}  // namespace qslim::optim
