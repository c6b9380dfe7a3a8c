#include "core/kernels.h"

#include <cmath>

#include "core/cpu/elementwise.h"
#include "core/cpu/reduce_kernels.h"

namespace qslim::kernels {

#define QSLIM_BINARY_KERNEL(fname, expr)                                                        \
  Tensor fname(const Tensor& a, const Tensor& b) {                                              \
    Tensor out;                                                                                 \
    QSLIM_DISPATCH_ALL(a.dtype(), #fname, [&] {                                                 \
      out = cpu::binary_map<scalar_t>(a, b, #fname, [](scalar_t x, scalar_t y) { return expr; }); \
    });                                                                                         \
    return out;                                                                                 \
  }

QSLIM_BINARY_KERNEL(add, x + y)
QSLIM_BINARY_KERNEL(sub, x - y)
QSLIM_BINARY_KERNEL(mul, x * y)
#undef QSLIM_BINARY_KERNEL

// Floating only: an integer division by zero would trap.
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out;
  QSLIM_DISPATCH_FLOAT(a.dtype(), "div", [&] {
    out = cpu::binary_map<scalar_t>(a, b, "div", [](scalar_t x, scalar_t y) { return x / y; });
  });
  return out;
}

// Integer tensors keep their dtype, so a fractional scalar would be truncated silently.
static void check_integral_scalar(const Tensor& a, double s, const char* op) {
  QSLIM_CHECK(is_floating(a.dtype()) || s == std::nearbyint(s), op, ": scalar ", s, " is not a whole number but the tensor is ",
              dtype_name(a.dtype()), "; convert the tensor to a floating dtype first");
}

Tensor add_scalar(const Tensor& a, double s) {
  check_integral_scalar(a, s, "add_scalar");
  Tensor out;
  QSLIM_DISPATCH_ALL(a.dtype(), "add_scalar", [&] {
    scalar_t v = static_cast<scalar_t>(s);
    out = cpu::unary_map<scalar_t>(a, [v](scalar_t x) { return static_cast<scalar_t>(x + v); });
  });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  check_integral_scalar(a, s, "mul_scalar");
  Tensor out;
  QSLIM_DISPATCH_ALL(a.dtype(), "mul_scalar", [&] {
    scalar_t v = static_cast<scalar_t>(s);
    out = cpu::unary_map<scalar_t>(a, [v](scalar_t x) { return static_cast<scalar_t>(x * v); });
  });
  return out;
}

void add_inplace(const Tensor& a, const Tensor& b) {
  QSLIM_DISPATCH_ALL(a.dtype(), "add_", [&] {
    cpu::binary_inplace<scalar_t>(a, b, "add_", [](scalar_t x, scalar_t y) { return static_cast<scalar_t>(x + y); });
  });
}

void axpy_inplace(const Tensor& a, double alpha, const Tensor& b) {
  QSLIM_DISPATCH_FLOAT(a.dtype(), "axpy_", [&] {
    scalar_t al = static_cast<scalar_t>(alpha);
    cpu::binary_inplace<scalar_t>(a, b, "axpy_", [al](scalar_t x, scalar_t y) { return x + al * y; });
  });
}

void mul_inplace(const Tensor& a, const Tensor& b) {
  QSLIM_DISPATCH_ALL(a.dtype(), "mul_", [&] {
    cpu::binary_inplace<scalar_t>(a, b, "mul_", [](scalar_t x, scalar_t y) { return static_cast<scalar_t>(x * y); });
  });
}

void scale_inplace(const Tensor& a, double s) {
  check_integral_scalar(a, s, "scale_");
  QSLIM_DISPATCH_ALL(a.dtype(), "scale_", [&] {
    scalar_t v = static_cast<scalar_t>(s);
    Tensor sc = Tensor::empty({}, a.dtype());
    *sc.data<scalar_t>() = v;
    cpu::binary_inplace<scalar_t>(a, sc, "scale_", [](scalar_t x, scalar_t y) { return static_cast<scalar_t>(x * y); });
  });
}

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  const int64_t nd = t.dim();
  std::vector<bool> reduce(nd, dims.empty());
  for (int64_t d : dims) reduce[wrap_dim(d, nd, "sum")] = true;
  Tensor out = cpu::sum_dims(t, reduce);
  if (keepdim) return out;
  Shape squeezed;
  for (int64_t i = 0; i < nd; ++i)
    if (!reduce[i]) squeezed.push_back(t.shape()[i]);
  return out.reshape(squeezed);
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const int64_t lead = t.dim() - static_cast<int64_t>(shape.size());
  QSLIM_CHECK(lead >= 0, "sum_to: cannot reduce shape ", shape_str(t.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < t.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && t.shape()[i] != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? t : sum(t, dims, true);
  return make_view(r.contiguous(), shape, contiguous_strides(shape), 0);
}

double sum_all(const Tensor& t) {
  double acc = 0;
  Tensor c = t.contiguous();
  QSLIM_DISPATCH_ALL(t.dtype(), "sum_all", [&] {
    const scalar_t* p = c.data<scalar_t>();
    for (int64_t i = 0, n = c.numel(); i < n; ++i) acc += static_cast<double>(p[i]);
  });
  return acc;
}

double dot(const Tensor& a, const Tensor& b) {
  QSLIM_CHECK(a.shape() == b.shape(), "dot: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  return sum_all(mul(a, b.to(a.dtype())));
}

bool all_finite(const Tensor& t) {
  if (!t.is_floating_point()) return true;
  bool ok = true;
  Tensor c = t.contiguous();
  QSLIM_DISPATCH_FLOAT(t.dtype(), "all_finite", [&] {
    const scalar_t* p = c.data<scalar_t>();
    for (int64_t i = 0, n = c.numel(); i < n && ok; ++i) ok = std::isfinite(p[i]);
  });
  return ok;
}

}  // namespace qslim::kernels
