// Differentiable reductions and softmax (ops_reduce.h).
#include "autograd/ops_reduce.h"

#include "autograd/node.h"
#include "core/cpu/index_kernels.h"
#include "core/cpu/reduce_kernels.h"
#include "core/cpu/softmax.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

namespace {

// Which dims a reduction covers: all when `dims` is empty; a repeated dim is an error (as in PyTorch).
struct ReducePlan {
  std::vector<bool> reduce;  // one flag per input dim
  Shape keep_shape;          // the input shape with reduced dims set to 1
  Shape out_shape;           // keep_shape without the reduced dims
  int64_t count = 1;         // elements reduced into each output element
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  const int64_t nd = x.dim();
  ReducePlan p;
  p.reduce.assign(nd, dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;  // dim 0 / -1 of a scalar reduces nothing
    QSLIM_CHECK(!p.reduce[w], op, ": dim ", d, " appears more than once in the list of dims");
    p.reduce[w] = true;
  }
  p.keep_shape = x.shape();
  for (int64_t i = 0; i < nd; ++i) {
    if (p.reduce[i]) {
      p.count *= x.size(i);
      p.keep_shape[i] = 1;
    } else {
      p.out_shape.push_back(x.size(i));
    }
  }
  return p;
}

// Sum of (detached) x as planned, in the keepdim or the squeezed shape; always a new tensor.
Tensor sum_planned(const Tensor& x, const ReducePlan& p, bool keepdim) {
  Tensor out = cpu::sum_dims(x, p.reduce);
  return keepdim ? out : out.reshape(p.out_shape);
}

// The output gradient broadcast back to the input shape, as a new contiguous tensor scaled by `scale`.
Tensor expand_grad(const Tensor& g, const ReducePlan& p, const Shape& in_shape, double scale) {
  Tensor gx = Tensor::empty(in_shape, g.dtype());
  gx.copy_(g.reshape(p.keep_shape));
  if (scale != 1.0) kernels::scale_inplace(gx, scale);
  return gx;
}

std::pair<Tensor, Tensor> minmax(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* op = is_max ? "max" : "min";
  const bool scalar = x.dim() == 0;
  Tensor xv = scalar ? x.detach().reshape({1}) : x.detach();
  dim = wrap_dim(dim, xv.dim(), op);
  Tensor values, indices;
  cpu::minmax_dim(xv, dim, is_max, &values, indices);
  Tensor keep_idx = indices;
  if (scalar) {
    values = values.reshape({});
    indices = indices.reshape({});
  } else if (!keepdim) {
    values = values.squeeze(dim);
    indices = indices.squeeze(dim);
  }
  if (needs_grad({&x})) {
    Shape in_shape = xv.shape(), x_shape = x.shape();
    DType dt = x.dtype();
    SavedTensor si(keep_idx);  // the returned indices alias it
    record(values, {x}, op, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor idx = si.get(op);
      Tensor gx = zeros(in_shape, dt);
      cpu::scatter_add_dim(gx, dim, idx, g[0].reshape(idx.shape()));
      return {gx.reshape(x_shape)};
    });
  }
  return {values, indices};
}

Tensor minmax_all(const Tensor& x, bool is_max) {
  const char* op = is_max ? "max" : "min";
  QSLIM_CHECK(x.numel() > 0, op, ": cannot reduce an empty tensor of shape ", shape_str(x.shape()),
              " (it has no identity)");
  Tensor flat = x.detach().reshape({x.numel()});
  Tensor values, indices;
  cpu::minmax_dim(flat, 0, is_max, &values, indices);
  Tensor out = values.reshape({});
  if (needs_grad({&x})) {
    SavedTensor sx(x), so(out);
    record(out, {x}, op, [sx, so, op](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      // PyTorch's full reduction shares the gradient evenly between tied extremes.
      Tensor xs = sx.get(op), r = so.get(op);
      Tensor gx = zeros(xs.shape(), xs.dtype());
      QSLIM_DISPATCH_FLOAT(xs.dtype(), op, [&] {
        Tensor xc = xs.contiguous();
        const scalar_t* p = xc.data<scalar_t>();
        scalar_t* q = gx.data<scalar_t>();
        const scalar_t v = *r.data<scalar_t>();
        const bool nan = v != v;
        int64_t ties = 0;
        for (int64_t i = 0, n = xc.numel(); i < n; ++i) ties += nan ? p[i] != p[i] : p[i] == v;
        const scalar_t share = static_cast<scalar_t>(g[0].item() / static_cast<double>(ties));
        for (int64_t i = 0, n = xc.numel(); i < n; ++i)
          if (nan ? p[i] != p[i] : p[i] == v) q[i] = share;
      });
      return {gx};
    });
  }
  return out;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  QSLIM_CHECK(x.is_floating_point(), op, ": expected a floating tensor (f32 or f64), got ", dtype_name(x.dtype()),
              " of shape ", shape_str(x.shape()));
  const bool scalar = x.dim() == 0;
  Tensor xv = scalar ? x.detach().reshape({1}) : x.detach();
  dim = wrap_dim(dim, xv.dim(), op);
  Tensor out = cpu::softmax_forward(xv, dim, log);
  if (scalar) out = out.reshape({});
  if (needs_grad({&x})) {
    SavedTensor so(out);
    Shape vshape = xv.shape();
    record(out, {x}, op, [so, dim, log, op, vshape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor y = so.get(op);
      Tensor gx = cpu::softmax_backward(g[0].reshape(vshape), y.reshape(vshape), dim, log);
      return {gx.reshape(y.shape())};
    });
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduce(x, dims, "sum");
  // Integer sums accumulate and return i64, as in PyTorch (a u8 mask of 300 ones sums to 300, not 44).
  Tensor xd = x.is_floating_point() ? x.detach() : x.detach().to(DType::I64);
  Tensor out = sum_planned(xd, p, keepdim);
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, {x}, "sum", [p, in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      return {expand_grad(g[0], p, in_shape, 1.0)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  QSLIM_CHECK(x.is_floating_point(), "mean: expected a floating tensor (f32 or f64), got ", dtype_name(x.dtype()),
              " of shape ", shape_str(x.shape()));
  ReducePlan p = plan_reduce(x, dims, "mean");
  // 1/0 = inf makes the mean over an empty dim NaN, as in PyTorch.
  const double scale = 1.0 / static_cast<double>(p.count);
  Tensor out = sum_planned(x.detach(), p, keepdim);
  kernels::scale_inplace(out, scale);
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, {x}, "mean", [p, in_shape, scale](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      return {expand_grad(g[0], p, in_shape, scale)};
    });
  }
  return out;
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool unbiased, bool keepdim) {
  QSLIM_CHECK(x.is_floating_point(), "var: expected a floating tensor (f32 or f64), got ", dtype_name(x.dtype()),
              " of shape ", shape_str(x.shape()));
  ReducePlan p = plan_reduce(x, dims, "var");
  Tensor xd = x.detach();
  // Two passes (mean, then squared deviations) for accuracy; N - 1 = 0 gives NaN as in PyTorch.
  Tensor m = sum_planned(xd, p, true);
  kernels::scale_inplace(m, 1.0 / static_cast<double>(p.count));
  Tensor centered = kernels::sub(xd, m);
  const double denom = static_cast<double>(p.count) - (unbiased ? 1.0 : 0.0);
  Tensor out = sum_planned(kernels::mul(centered, centered), p, keepdim);
  kernels::scale_inplace(out, 1.0 / denom);
  if (needs_grad({&x})) {
    SavedTensor sc(centered);
    record(out, {x}, "var", [p, sc, denom](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor c = sc.get("var");
      Tensor gx = kernels::mul(c, g[0].reshape(p.keep_shape));
      kernels::scale_inplace(gx, 2.0 / denom);
      return {gx};
    });
  }
  return out;
}

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return minmax(x, dim, keepdim, true); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return minmax(x, dim, keepdim, false); }
Tensor max(const Tensor& x) { return minmax_all(x, true); }
Tensor min(const Tensor& x) { return minmax_all(x, false); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  const bool scalar = x.dim() == 0;
  Tensor xv = scalar ? x.detach().reshape({1}) : x.detach();
  dim = wrap_dim(dim, xv.dim(), "argmax");
  Tensor indices;
  cpu::minmax_dim(xv, dim, true, nullptr, indices);
  if (scalar) return indices.reshape({});
  return keepdim ? indices : indices.squeeze(dim);
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace qslim
