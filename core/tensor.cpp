#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/cpu/strided_loop.h"

namespace qslim {

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) QSLIM_CHECK(d >= 0, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(numel_of(shape) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * dtype_size(dtype());
}

double Tensor::item() const {
  QSLIM_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(),
              " elements, expected exactly 1");
  double v = 0;
  QSLIM_DISPATCH_ALL(dtype(), "item", [&] { v = static_cast<double>(*static_cast<scalar_t*>(raw_data())); });
  return v;
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl().storage;
  impl->offset = offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = base.dtype();
  impl->device = base.device();
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

namespace {
template <typename D, typename S>
void copy_cast(const Tensor& src, const Tensor& dst) {
  const S* sp = static_cast<const S*>(src.impl().storage->data());
  D* dp = static_cast<D*>(dst.impl().storage->data());
  Shape sstr = cpu::broadcast_strides(src.shape(), src.strides(), dst.shape());
  if (src.is_contiguous() && dst.is_contiguous() && src.shape() == dst.shape()) {
    const S* s = sp + src.offset();
    D* d = dp + dst.offset();
    int64_t n = dst.numel();
    if constexpr (std::is_same_v<D, S>) {
      std::memcpy(d, s, n * sizeof(D));
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
    }
    return;
  }
  cpu::for_each_row<2>(dst.shape(), {dst.strides(), sstr}, {dst.offset(), src.offset()},
                       [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                         D* d = dp + off[0];
                         const S* s = sp + off[1];
                         for (int64_t i = 0; i < n; ++i) d[i * st[0]] = static_cast<D>(s[i * st[1]]);
                       });
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  broadcast_shapes(src.shape(), shape(), "copy_");
  QSLIM_CHECK(broadcast_shapes(src.shape(), shape(), "copy_") == shape(), "copy_: source of shape ",
              shape_str(src.shape()), " cannot be broadcast to destination shape ", shape_str(shape()));
  QSLIM_DISPATCH_ALL(dtype(), "copy_", [&] {
    using D = scalar_t;
    QSLIM_DISPATCH_ALL(src.dtype(), "copy_", [&] { copy_cast<D, scalar_t>(src, *this); });
  });
  bump_version();
  return *this;
}

Tensor& Tensor::fill_(double value) {
  QSLIM_DISPATCH_ALL(dtype(), "fill_", [&] {
    scalar_t v = static_cast<scalar_t>(value);
    scalar_t* p = static_cast<scalar_t*>(impl().storage->data());
    if (is_contiguous()) {
      scalar_t* d = p + offset();
      std::fill(d, d + numel(), v);
    } else {
      cpu::for_each_row<1>(shape(), {strides()}, {offset()},
                           [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
                             for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = v;
                           });
    }
  });
  bump_version();
  return *this;
}

Tensor& Tensor::set_requires_grad(bool on) {
  QSLIM_CHECK(!on || is_floating_point(), "set_requires_grad: only floating tensors can require grad, got ",
              dtype_name(dtype()));
  QSLIM_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad");
  impl().meta().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  if (!impl().autograd || !impl().autograd->grad) return Tensor();
  return Tensor(impl().autograd->grad);
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    QSLIM_CHECK(g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()),
                " does not match tensor shape ", shape_str(shape()));
  impl().meta().grad = g.impl_ptr();
}

std::string Tensor::to_string() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  os << "Tensor(shape=" << shape_str(t.shape()) << ", dtype=" << dtype_name(t.dtype());
  if (t.requires_grad()) os << ", requires_grad";
  os << ")\n";
  constexpr int64_t kMaxShown = 6;
  Tensor c = t.to(DType::F64).contiguous();
  const double* p = c.data<double>();
  const Shape& s = t.shape();
  int64_t nd = t.dim();
  if (nd == 0) return os << p[0] << "\n";
  // Print row by row of the last dimension, eliding the middle of long dimensions.
  std::vector<int64_t> idx(nd, 0);
  Shape strides = contiguous_strides(s);
  std::function<void(int64_t, int64_t, int)> rec = [&](int64_t d, int64_t off, int indent) {
    os << "[";
    int64_t n = s[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > kMaxShown && i == kMaxShown / 2) {
        os << (d == nd - 1 ? "..., " : "...,\n" + std::string(indent + 1, ' '));
        i = n - kMaxShown / 2;
      }
      if (d == nd - 1) {
        os << std::setprecision(5) << p[off + i * strides[d]];
      } else {
        rec(d + 1, off + i * strides[d], indent + 1);
      }
      if (i + 1 < n) os << (d == nd - 1 ? ", " : ",\n" + std::string(indent + 1, ' '));
    }
    os << "]";
  };
  rec(0, 0, 0);
  return os << "\n";
}

}  // namespace qslim
