// Differentiable joining and indexing (ops_index.h).
#include "autograd/ops_index.h"

#include "autograd/node.h"
#include "core/cpu/index_kernels.h"
#include "core/factory.h"

namespace qslim {

namespace {

void check_index_dtype(const Tensor& index, const char* op) {
  QSLIM_CHECK(index.dtype() == DType::I64, op, ": index must be i64, got ", dtype_name(index.dtype()), " of shape ",
              shape_str(index.shape()));
}

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  QSLIM_CHECK(!xs.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& ref = xs[0];
  QSLIM_CHECK(ref.dim() > 0, "cat: zero-dimensional tensor (at position 0) cannot be concatenated");
  dim = wrap_dim(dim, ref.dim(), "cat");
  Shape out_shape = ref.shape();
  out_shape[dim] = 0;
  std::vector<Tensor> detached;
  detached.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    QSLIM_CHECK(x.dtype() == ref.dtype(), "cat: tensor ", i, " has dtype ", dtype_name(x.dtype()), " but tensor 0 has ",
                dtype_name(ref.dtype()));
    bool same = x.dim() == ref.dim();
    for (int64_t d = 0; same && d < ref.dim(); ++d) same = d == dim || x.size(d) == ref.size(d);
    QSLIM_CHECK(same, "cat: tensor ", i, " of shape ", shape_str(x.shape()), " does not match tensor 0 of shape ",
                shape_str(ref.shape()), " outside the concatenation dim ", dim);
    out_shape[dim] += x.size(dim);
    detached.push_back(x.detach());
  }
  Tensor out = cpu::cat_dim(detached, dim, out_shape);
  if (needs_grad(xs)) {
    std::vector<int64_t> sizes;
    std::vector<bool> wants;
    for (const Tensor& x : xs) {
      sizes.push_back(x.size(dim));
      wants.push_back(x.requires_grad());
    }
    record(out, xs, "cat", [sizes, wants, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      std::vector<Tensor> gx(sizes.size());
      if (!g[0].defined()) return gx;
      int64_t at = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (wants[i]) gx[i] = g[0].narrow(dim, at, sizes[i]).contiguous();
        at += sizes[i];
      }
      return gx;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  QSLIM_CHECK(!xs.empty(), "stack: expected a non-empty list of tensors");
  dim = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    QSLIM_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor ", i, " of shape ", shape_str(xs[i].shape()),
                " differs from tensor 0 of shape ", shape_str(xs[0].shape()), "; stack needs equal shapes");
    parts.push_back(xs[i].unsqueeze(dim));
  }
  return cat(parts, dim);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index_dtype(index, "index_select");
  QSLIM_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got shape ", shape_str(index.shape()));
  QSLIM_CHECK(x.dim() > 0, "index_select: input must have at least one dim, got a scalar");
  dim = wrap_dim(dim, x.dim(), "index_select");
  Tensor out = cpu::index_select_dim(x.detach(), dim, index, "index_select");
  if (needs_grad({&x})) {
    SavedTensor si(index);
    Shape in_shape = x.shape();
    DType dt = x.dtype();
    record(out, {x}, "index_select", [si, in_shape, dt, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor gx = zeros(in_shape, dt);
      cpu::index_add_dim(gx, dim, si.get("index_select"), g[0]);
      return {gx};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index_dtype(index, "gather");
  QSLIM_CHECK(index.dim() == x.dim(), "gather: index ", shape_str(index.shape()), " must have the same rank as input ",
              shape_str(x.shape()));
  const bool scalar = x.dim() == 0;
  Tensor xv = scalar ? x.detach().reshape({1}) : x.detach();
  Tensor iv = scalar ? index.reshape({1}) : index;
  dim = wrap_dim(dim, xv.dim(), "gather");
  for (int64_t d = 0; d < xv.dim(); ++d)
    QSLIM_CHECK(d == dim || iv.size(d) <= xv.size(d), "gather: index ", shape_str(index.shape()),
                " is larger than input ", shape_str(x.shape()), " at dim ", d, " (only dim ", dim, " may differ)");
  Tensor out = cpu::gather_dim(xv, dim, iv, "gather");
  if (scalar) out = out.reshape({});
  if (needs_grad({&x})) {
    SavedTensor si(iv);
    Shape in_shape = xv.shape(), x_shape = x.shape();
    DType dt = x.dtype();
    record(out, {x}, "gather", [si, in_shape, x_shape, dt, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      if (!g[0].defined()) return {Tensor()};
      Tensor idx = si.get("gather");
      Tensor gx = zeros(in_shape, dt);
      cpu::scatter_add_dim(gx, dim, idx, g[0].reshape(idx.shape()));
      return {gx.reshape(x_shape)};
    });
  }
  return out;
}

}  // namespace qslim
