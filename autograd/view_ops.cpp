// Tensor's view and copy methods, with their backward passes.
#include <algorithm>
#include <numeric>

#include "autograd/node.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

namespace {
Shape infer_shape(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      QSLIM_CHECK(infer < 0, op, ": only one dimension can be -1 in ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      QSLIM_CHECK(s[i] >= 0, op, ": invalid size in ", shape_str(requested));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    QSLIM_CHECK(known != 0 && numel % known == 0, op, ": cannot reshape ", shape_str(from), " into ",
                shape_str(requested));
    s[infer] = numel / known;
  }
  QSLIM_CHECK(numel_of(s) == numel, op, ": cannot reshape ", shape_str(from), " (", numel, " elements) into ",
              shape_str(requested));
  return s;
}

// Strides for viewing (shape, strides) as `target` without copying, if possible.
bool view_strides(const Shape& shape, const Shape& strides, const Shape& target, Shape& out) {
  out.assign(target.size(), 0);
  if (numel_of(shape) == 0 || shape.empty()) {
    out = contiguous_strides(target);
    return true;
  }
  // Group source dims into contiguous chunks and map target dims onto them (PyTorch's algorithm).
  int64_t view_d = static_cast<int64_t>(target.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || target[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= target[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Tensor tracked_view(const Tensor& self, const Shape& shape, const Shape& strides, int64_t offset, const char* name,
                    BackwardFn fn) {
  Tensor out = make_view(self, shape, strides, offset);
  out.impl().view = true;
  if (needs_grad({&self})) record(out, {self}, name, std::move(fn));
  return out;
}
}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape s = infer_shape(requested, numel(), "view", shape());
  Shape st;
  QSLIM_CHECK(view_strides(shape(), strides(), s, st), "view: tensor of shape ", shape_str(shape()),
              " with strides ", shape_str(strides()), " cannot be viewed as ", shape_str(s), "; use reshape");
  Shape in_shape = shape();
  return tracked_view(*this, s, st, offset(), "view",
                      [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].reshape(in_shape)}; });
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape s = infer_shape(requested, numel(), "reshape", shape());
  Shape st;
  if (view_strides(shape(), strides(), s, st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  QSLIM_CHECK(s <= e, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape ns(shape().begin(), shape().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape()[i];
  ns.push_back(m);
  ns.insert(ns.end(), shape().begin() + e + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape s = shape(), st = strides();
  std::swap(s[d0], s[d1]);
  std::swap(st[d0], st[d1]);
  return tracked_view(*this, s, st, offset(), "transpose",
                      [d0, d1](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].transpose(d0, d1)}; });
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  QSLIM_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims for a tensor of rank ",
              dim());
  Shape s(dim()), st(dim());
  std::vector<int64_t> inverse(dim(), -1);
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    QSLIM_CHECK(inverse[d] < 0, "permute: dim ", d, " repeated");
    inverse[d] = i;
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  return tracked_view(*this, s, st, offset(), "permute",
                      [inverse](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].permute(inverse)}; });
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  QSLIM_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Shape in_shape = shape();
  DType dt = dtype();
  return tracked_view(*this, s, st, offset() + start * strides()[d], "slice",
                      [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                        Tensor gi = zeros(in_shape, dt);
                        gi.slice(d, start, end, step).copy_(g[0]);
                        return {gi};
                      });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  QSLIM_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow: range [", start, ", ",
              start + length, ") out of bounds for dim ", d, " of size ", shape()[d]);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  QSLIM_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t v : shape())
    if (v != 1) s.push_back(v);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return reshape(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::expand(const Shape& target) const {
  QSLIM_CHECK(static_cast<int64_t>(target.size()) >= dim(), "expand: cannot expand shape ", shape_str(shape()),
              " to fewer dims ", shape_str(target));
  size_t lead = target.size() - dim();
  Shape s(target.size()), st(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      QSLIM_CHECK(target[i] >= 0, "expand: invalid target shape ", shape_str(target));
      s[i] = target[i];
      continue;
    }
    int64_t have = shape()[i - lead], want = target[i] == -1 ? have : target[i];
    QSLIM_CHECK(have == want || have == 1, "expand: shape ", shape_str(shape()), " cannot be expanded to ",
                shape_str(target));
    s[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  if (s == shape()) return *this;
  Shape in_shape = shape();
  return tracked_view(*this, s, st, offset(), "expand",
                      [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                        return {kernels::sum_to(g[0], in_shape)};
                      });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype());
  out.copy_(*this);
  if (needs_grad({this}))
    record(out, {*this}, "clone", [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), t);
  out.copy_(*this);
  if (is_floating(t) && needs_grad({this})) {
    DType src = dtype();
    record(out, {*this}, "to", [src](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].to(src)}; });
  }
  return out;
}

}  // namespace qslim
