#include "nn/optim/sgd.h"

#include "autograd/grad_mode.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::optim {

namespace {

constexpr int64_t kGrain = 1 << 16;

template <typename T, bool kMomentum>
void sgd_loop(T* __restrict p, const T* __restrict g, T* __restrict buf, int64_t n, T lr, T wd, T mom, T damp,
              bool use_wd, bool nesterov, bool first) {
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i];
    if (use_wd) d += wd * p[i];
    if (kMomentum) {
      T m = first ? d : mom * buf[i] + damp * d;
      buf[i] = m;
      d = nesterov ? d + mom * m : m;
    }
    p[i] -= lr * d;
  }
}

template <typename T>
void sgd_update(T* p, const T* g, T* buf, int64_t n, const GroupOptions& o, bool first) {
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
  const T damp = static_cast<T>(1.0 - o.dampening);
  const bool use_wd = o.weight_decay != 0.0, nesterov = o.nesterov;
  cpu::parallel_range(n, kGrain, [=](int64_t b, int64_t e) {
    if (buf)
      sgd_loop<T, true>(p + b, g + b, buf + b, e - b, lr, wd, mom, damp, use_wd, nesterov, first);
    else
      sgd_loop<T, false>(p + b, g + b, nullptr, e - b, lr, wd, mom, damp, use_wd, nesterov, first);
  });
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, const GroupOptions& options) {
  add_param_group(ParamGroup{std::move(params), options});
}

SGD::SGD(std::vector<ParamGroup> groups) {
  QSLIM_CHECK(!groups.empty(), "SGD: no parameter groups given");
  for (ParamGroup& g : groups) add_param_group(std::move(g));
}

void SGD::validate(const GroupOptions& o) const {
  QSLIM_CHECK(o.lr >= 0.0, "SGD: lr must be >= 0, got ", o.lr);
  QSLIM_CHECK(o.momentum >= 0.0, "SGD: momentum must be >= 0, got ", o.momentum);
  QSLIM_CHECK(o.weight_decay >= 0.0, "SGD: weight_decay must be >= 0, got ", o.weight_decay);
  QSLIM_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
              "SGD: nesterov momentum requires momentum > 0 and dampening = 0, got momentum ", o.momentum,
              " and dampening ", o.dampening);
}

std::vector<std::string> SGD::buffer_names(const GroupOptions& o) const {
  if (o.momentum != 0.0) return {"momentum_buffer"};
  return {};
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const GroupOptions& o = groups_[gi].options;
    const size_t num_buffers = buffer_names(o).size();
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      Tensor g = grad_of(p, "SGD::step");
      if (!g.defined()) continue;
      const bool first = state_[gi][i].buffers.empty();
      ParamState& s = state_for(gi, i, num_buffers);
      QSLIM_DISPATCH_FLOAT(p.dtype(), "SGD::step", [&] {
        scalar_t* buf = s.buffers.empty() ? nullptr : s.buffers[0].data<scalar_t>();
        sgd_update<scalar_t>(p.data<scalar_t>(), g.data<scalar_t>(), buf, p.numel(), o, first);
      });
      ++s.step;
      p.bump_version();
    }
  }
}

}  // namespace qslim::optim
