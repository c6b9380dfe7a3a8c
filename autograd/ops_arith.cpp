// Differentiable arithmetic (ops_arith.h): broadcasting binary ops, scalar ops, unary math and
// the tracked in-place variants.
#include "autograd/ops_arith.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/arith_common.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/unary_kernels.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

using arith_detail::check_float;
using arith_detail::check_inplace_target;
using arith_detail::check_view_history;
using arith_detail::check_same_dtype;
using arith_detail::record_guarded;

namespace {

using Grads = std::vector<Tensor>;

// Integer tensors take integral scalars only: casting 0.5 to an integer would silently give 0.
void check_scalar_fits(const Tensor& a, double s, const char* op) {
  if (a.is_floating_point()) return;
  QSLIM_CHECK(std::isfinite(s) && std::nearbyint(s) == s, op, ": scalar ", s, " is not an integer; cannot apply it to a ",
              dtype_name(a.dtype()), " tensor of shape ", shape_str(a.shape()),
              " without promotion (convert with .to(DType::F32) first)");
}

Tensor neg_kernel(const Tensor& t) { return cpu::unary(t, cpu::UnaryOp::Neg); }

// g where mask(x) holds, else 0 (g and x of the same shape).
template <typename Pred>
Tensor masked_grad(const Tensor& g, const Tensor& x, const char* op, Pred pred) {
  Tensor out;
  QSLIM_DISPATCH_FLOAT(g.dtype(), op, [&] {
    using T = scalar_t;
    out = cpu::binary_map<T>(g, x, op, [pred](T gv, T xv) { return pred(xv) ? gv : T(0); });
  });
  return out;
}

// Fraction of the gradient of maximum (take_a: a > b) or minimum (a < b) that goes to `a`, at the
// broadcast shape: 1 where a wins, 0 where b wins, 1/2 on ties (PyTorch's convention).
Tensor max_min_weight_a(const Tensor& a, const Tensor& b, bool is_max) {
  Tensor w;
  QSLIM_DISPATCH_FLOAT(a.dtype(), is_max ? "maximum" : "minimum", [&] {
    using T = scalar_t;
    if (is_max) {
      w = cpu::binary_map<T>(a, b, "maximum", [](T x, T y) { return x > y ? T(1) : (x == y ? T(0.5) : T(0)); });
    } else {
      w = cpu::binary_map<T>(a, b, "minimum", [](T x, T y) { return x < y ? T(1) : (x == y ? T(0.5) : T(0)); });
    }
  });
  return w;
}

Tensor max_min(const Tensor& a, const Tensor& b, bool is_max) {
  const char* op = is_max ? "maximum" : "minimum";
  check_same_dtype(a, b, op);
  Tensor out = is_max ? cpu::maximum(a, b) : cpu::minimum(a, b);
  if (needs_grad({&a, &b})) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sa = a.shape(), sb = b.shape();
    SavedTensor sva(a), svb(b);
    record_guarded(out, {a, b}, op, [=](const Tensor& g) -> Grads {
      Tensor w = max_min_weight_a(sva.get(op), svb.get(op), is_max);
      Tensor ga_full = kernels::mul(g, w);
      Tensor ga = ra ? kernels::sum_to(ga_full, sa) : Tensor();
      Tensor gb = rb ? kernels::sum_to(kernels::sub(g, ga_full), sb) : Tensor();
      return {ga, gb};
    });
  }
  return out;
}

// A gradient of zeros for ops that are piecewise constant (sign, round).
Tensor zero_grad_op(const Tensor& out, const Tensor& a, const char* op) {
  if (needs_grad({&a})) {
    const Shape sa = a.shape();
    const DType dt = a.dtype();
    record_guarded(out, {a}, op, [sa, dt](const Tensor&) -> Grads { return {zeros(sa, dt)}; });
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- binary

Tensor add(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "add");
  Tensor out = kernels::add(a, b);
  if (needs_grad({&a, &b})) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sa = a.shape(), sb = b.shape();
    record_guarded(out, {a, b}, "add", [=](const Tensor& g) -> Grads {
      return {ra ? kernels::sum_to(g, sa) : Tensor(), rb ? kernels::sum_to(g, sb) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "sub");
  Tensor out = kernels::sub(a, b);
  if (needs_grad({&a, &b})) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sa = a.shape(), sb = b.shape();
    record_guarded(out, {a, b}, "sub", [=](const Tensor& g) -> Grads {
      return {ra ? kernels::sum_to(g, sa) : Tensor(), rb ? neg_kernel(kernels::sum_to(g, sb)) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "mul");
  Tensor out = kernels::mul(a, b);
  if (needs_grad({&a, &b})) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sa = a.shape(), sb = b.shape();
    SavedTensor sva = rb ? SavedTensor(a) : SavedTensor();
    SavedTensor svb = ra ? SavedTensor(b) : SavedTensor();
    record_guarded(out, {a, b}, "mul", [=](const Tensor& g) -> Grads {
      return {ra ? kernels::sum_to(kernels::mul(g, svb.get("mul")), sa) : Tensor(),
              rb ? kernels::sum_to(kernels::mul(g, sva.get("mul")), sb) : Tensor()};
    });
  }
  return out;
}

namespace {
// d(a/b)/db * g = -g * a / b^2, reduced to b's shape.
Tensor div_grad_b(const Tensor& g_over_b, const Tensor& a, const Tensor& b, const Shape& sb) {
  Tensor t = kernels::div(kernels::mul(g_over_b, a), b);
  kernels::scale_inplace(t, -1.0);
  return kernels::sum_to(t, sb);
}
}  // namespace

Tensor div(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "div");
  check_float(a, "div");
  Tensor out = kernels::div(a, b);
  if (needs_grad({&a, &b})) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sa = a.shape(), sb = b.shape();
    SavedTensor sva = rb ? SavedTensor(a) : SavedTensor();
    SavedTensor svb(b);
    record_guarded(out, {a, b}, "div", [=](const Tensor& g) -> Grads {
      Tensor bv = svb.get("div");
      Tensor q = kernels::div(g, bv);
      return {ra ? kernels::sum_to(q, sa) : Tensor(), rb ? div_grad_b(q, sva.get("div"), bv, sb) : Tensor()};
    });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) { return max_min(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return max_min(a, b, false); }

// ---------------------------------------------------------------- scalar

Tensor add(const Tensor& a, double s) {
  check_scalar_fits(a, s, "add");
  Tensor out = kernels::add_scalar(a, s);
  if (needs_grad({&a})) record_guarded(out, {a}, "add_scalar", [](const Tensor& g) -> Grads { return {g}; });
  return out;
}

Tensor mul(const Tensor& a, double s) {
  check_scalar_fits(a, s, "mul");
  Tensor out = kernels::mul_scalar(a, s);
  if (needs_grad({&a}))
    record_guarded(out, {a}, "mul_scalar", [s](const Tensor& g) -> Grads { return {kernels::mul_scalar(g, s)}; });
  return out;
}

// ---------------------------------------------------------------- unary

Tensor neg(const Tensor& a) {
  Tensor out = neg_kernel(a);
  if (needs_grad({&a})) record_guarded(out, {a}, "neg", [](const Tensor& g) -> Grads { return {neg_kernel(g)}; });
  return out;
}

Tensor exp(const Tensor& a) {
  Tensor out = cpu::unary(a, cpu::UnaryOp::Exp);
  if (needs_grad({&a})) {
    SavedTensor y(out);
    record_guarded(out, {a}, "exp", [y](const Tensor& g) -> Grads { return {kernels::mul(g, y.get("exp"))}; });
  }
  return out;
}

Tensor log(const Tensor& a) {
  Tensor out = cpu::unary(a, cpu::UnaryOp::Log);
  if (needs_grad({&a})) {
    SavedTensor x(a);
    record_guarded(out, {a}, "log", [x](const Tensor& g) -> Grads { return {kernels::div(g, x.get("log"))}; });
  }
  return out;
}

Tensor pow(const Tensor& a, double exponent) {
  Tensor out = cpu::pow_scalar(a, exponent);
  if (needs_grad({&a})) {
    SavedTensor x(a);
    const Shape sa = a.shape();
    const DType dt = a.dtype();
    record_guarded(out, {a}, "pow", [x, exponent, sa, dt](const Tensor& g) -> Grads {
      if (exponent == 0.0) return {zeros(sa, dt)};
      Tensor d = kernels::mul(g, cpu::pow_scalar(x.get("pow"), exponent - 1.0));
      kernels::scale_inplace(d, exponent);
      return {d};
    });
  }
  return out;
}

Tensor sqrt(const Tensor& a) {
  Tensor out = cpu::unary(a, cpu::UnaryOp::Sqrt);
  if (needs_grad({&a})) {
    SavedTensor y(out);
    record_guarded(out, {a}, "sqrt", [y](const Tensor& g) -> Grads {
      Tensor d = kernels::div(g, y.get("sqrt"));
      kernels::scale_inplace(d, 0.5);
      return {d};
    });
  }
  return out;
}

Tensor abs(const Tensor& a) {
  Tensor out = cpu::unary(a, cpu::UnaryOp::Abs);
  if (needs_grad({&a})) {
    SavedTensor x(a);
    record_guarded(out, {a}, "abs", [x](const Tensor& g) -> Grads {
      Tensor out;
      QSLIM_DISPATCH_FLOAT(g.dtype(), "abs", [&] {
        using T = scalar_t;
        out = cpu::binary_map<T>(g, x.get("abs"), "abs",
                                 [](T gv, T xv) { return xv > T(0) ? gv : (xv < T(0) ? -gv : T(0)); });
      });
      return {out};
    });
  }
  return out;
}

Tensor clamp(const Tensor& a, double lo, double hi) {
  Tensor out = cpu::clamp(a, lo, hi);
  if (needs_grad({&a})) {
    SavedTensor x(a);
    record_guarded(out, {a}, "clamp", [x, lo, hi](const Tensor& g) -> Grads {
      return {masked_grad(g, x.get("clamp"), "clamp", [lo, hi](double v) { return v >= lo && v <= hi; })};
    });
  }
  return out;
}

Tensor sign(const Tensor& a) { return zero_grad_op(cpu::unary(a, cpu::UnaryOp::Sign), a, "sign"); }
Tensor round(const Tensor& a) { return zero_grad_op(cpu::unary(a, cpu::UnaryOp::Round), a, "round"); }

// ---------------------------------------------------------------- in place
// The kernel writes into a's storage first; record() then takes a's current history as the input
// edge before making the new node a's grad_fn. Values backward needs from a are saved after the
// write (div_) or copied before it (mul_), so the version check only fires on later writes.

namespace {
template <typename F>
void binary_inplace_all(const Tensor& a, const Tensor& b, const char* op, F f) {
  QSLIM_DISPATCH_ALL(a.dtype(), op, [&] {
    using T = scalar_t;
    cpu::binary_inplace<T>(a, b, op, [f](T x, T y) { return static_cast<T>(f(x, y)); });
  });
}
}  // namespace

Tensor& add_(Tensor& a, const Tensor& b) {
  check_inplace_target(a, "add_");
  check_same_dtype(a, b, "add_");
  const bool grad = needs_grad({&a, &b});
  check_view_history(a, grad, "add_");
  binary_inplace_all(a, b, "add_", [](auto x, auto y) { return x + y; });
  if (grad) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sb = b.shape();
    record_guarded(a, {a, b}, "add_", [=](const Tensor& g) -> Grads {
      return {ra ? g : Tensor(), rb ? kernels::sum_to(g, sb) : Tensor()};
    });
  }
  return a;
}

Tensor& sub_(Tensor& a, const Tensor& b) {
  check_inplace_target(a, "sub_");
  check_same_dtype(a, b, "sub_");
  const bool grad = needs_grad({&a, &b});
  check_view_history(a, grad, "sub_");
  binary_inplace_all(a, b, "sub_", [](auto x, auto y) { return x - y; });
  if (grad) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sb = b.shape();
    record_guarded(a, {a, b}, "sub_", [=](const Tensor& g) -> Grads {
      return {ra ? g : Tensor(), rb ? neg_kernel(kernels::sum_to(g, sb)) : Tensor()};
    });
  }
  return a;
}

Tensor& mul_(Tensor& a, const Tensor& b) {
  check_inplace_target(a, "mul_");
  check_same_dtype(a, b, "mul_");
  const bool grad = needs_grad({&a, &b});
  check_view_history(a, grad, "mul_");
  const bool ra = a.requires_grad(), rb = b.requires_grad();
  // b's gradient needs a's value from before the write.
  SavedTensor a_old = grad && rb ? SavedTensor(a.detach().clone()) : SavedTensor();
  SavedTensor svb = grad && ra ? SavedTensor(b) : SavedTensor();
  binary_inplace_all(a, b, "mul_", [](auto x, auto y) { return x * y; });
  if (grad) {
    const Shape sb = b.shape();
    record_guarded(a, {a, b}, "mul_", [=](const Tensor& g) -> Grads {
      return {ra ? kernels::mul(g, svb.get("mul_")) : Tensor(),
              rb ? kernels::sum_to(kernels::mul(g, a_old.get("mul_")), sb) : Tensor()};
    });
  }
  return a;
}

Tensor& div_(Tensor& a, const Tensor& b) {
  check_inplace_target(a, "div_");
  check_same_dtype(a, b, "div_");
  check_float(a, "div_");
  const bool grad = needs_grad({&a, &b});
  check_view_history(a, grad, "div_");
  SavedTensor svb = grad ? SavedTensor(b) : SavedTensor();
  binary_inplace_all(a, b, "div_", [](auto x, auto y) { return x / y; });
  if (grad) {
    const bool ra = a.requires_grad(), rb = b.requires_grad();
    const Shape sb = b.shape();
    // d(a/b)/db = -(a/b)/b: the result now held in a is all b's gradient needs.
    SavedTensor result = rb ? SavedTensor(a) : SavedTensor();
    record_guarded(a, {a, b}, "div_", [=](const Tensor& g) -> Grads {
      Tensor bv = svb.get("div_");
      Tensor q = kernels::div(g, bv);
      Tensor gb;
      if (rb) {
        gb = kernels::mul(q, result.get("div_"));
        kernels::scale_inplace(gb, -1.0);
        gb = kernels::sum_to(gb, sb);
      }
      return {ra ? q : Tensor(), gb};
    });
  }
  return a;
}

Tensor& mul_(Tensor& a, double s) {
  check_inplace_target(a, "mul_");
  check_scalar_fits(a, s, "mul_");
  const bool grad = needs_grad({&a});
  check_view_history(a, grad, "mul_");
  kernels::scale_inplace(a, s);
  if (grad)
    record_guarded(a, {a}, "mul_scalar_", [s](const Tensor& g) -> Grads { return {kernels::mul_scalar(g, s)}; });
  return a;
}

Tensor& add_(Tensor& a, double s) {
  check_inplace_target(a, "add_");
  check_scalar_fits(a, s, "add_");
  const bool grad = needs_grad({&a});
  check_view_history(a, grad, "add_");
  QSLIM_DISPATCH_ALL(a.dtype(), "add_", [&] {
    using T = scalar_t;
    Tensor sc = scalar_tensor(s, a.dtype());
    cpu::binary_inplace<T>(a, sc, "add_", [](T x, T y) { return static_cast<T>(x + y); });
  });
  if (grad) record_guarded(a, {a}, "add_scalar_", [](const Tensor& g) -> Grads { return {g}; });
  return a;
}

}  // namespace qslim
