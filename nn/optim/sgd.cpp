#include "nn/optim/sgd.h"

#include "autograd/grad_mode.h"
#include "core/parallel.h"

namespace qslim::optim {

namespace {

constexpr int64_t kGrain = 1 << 16;

template <typename T>
void sgd_update(T* p, const T* g, T* buf, int64_t n, const GroupOptions& o, bool first) {
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
  const T damp = static_cast<T>(1.0 - o.dampening);
  const bool use_wd = o.weight_decay != 0.0, nesterov = o.nesterov;
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    if (!buf) {
      for (int64_t i = b; i < e; ++i) {
        T d = g[i];
        if (use_wd) d += wd * p[i];
        p[i] -= lr * d;
      }
      return;
    }
    for (int64_t i = b; i < e; ++i) {
      T d = g[i];
      if (use_wd) d += wd * p[i];
      T m = first ? d : mom * buf[i] + damp * d;
      buf[i] = m;
      if (nesterov) m = d + mom * m;
      p[i] -= lr * m;
    }
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
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      Tensor g = grad_of(p, "SGD::step");
      if (!g.defined()) continue;
      const bool first = state_[gi][i].buffers.empty();
      ParamState& s = state_for(gi, i);
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
