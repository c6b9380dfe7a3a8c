// Internal helpers shared by the elementwise differentiable ops (ops_arith.cpp, ops_activation.cpp):
// argument checks with op-named messages, and recording a backward that tolerates an undefined
// (all-zero) incoming gradient.
#pragma once
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/tensor.h"

namespace qslim::arith_detail {

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  QSLIM_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch, ", dtype_name(a.dtype()), " ", shape_str(a.shape()),
              " vs ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
              " (no implicit promotion; convert one operand with .to())");
}

inline void check_float(const Tensor& a, const char* op) {
  QSLIM_CHECK(a.is_floating_point(), op, ": expected a floating tensor (f32 or f64), got ", dtype_name(a.dtype()),
              " of shape ", shape_str(a.shape()));
}

// In-place writes are refused into a leaf that requires grad (its .grad would describe a value
// that no longer exists) and into expanded views (several elements share one memory cell).
inline void check_inplace_target(const Tensor& a, const char* op) {
  QSLIM_CHECK(!(GradMode::is_enabled() && a.requires_grad() && a.is_leaf()), op, ": a leaf tensor of shape ",
              shape_str(a.shape()), " that requires grad cannot be modified in place (clone it, or use NoGradGuard)");
  for (int64_t d = 0; d < a.dim(); ++d)
    QSLIM_CHECK(a.strides()[d] != 0 || a.shape()[d] <= 1, op, ": cannot write in place into an expanded view of shape ",
                shape_str(a.shape()), " with strides ", shape_str(a.strides()));
}

// An in-place op that records history on a view would leave its base's history unchanged, so
// gradients flowing through the base (or reaching the op's other inputs) would be silently wrong.
inline void check_view_history(const Tensor& a, bool records, const char* op) {
  QSLIM_CHECK(!records || !a.impl().view, op, ": cannot record an in-place op on a view of shape ", shape_str(a.shape()),
              " (its base tensor's autograd history would not see the change); use the out-of-place op, or "
              "NoGradGuard if no gradient is wanted");
}

// record() for single-output ops whose backward is fn(grad) -> one gradient per input.
template <typename F>
void record_guarded(const Tensor& out, const std::vector<Tensor>& inputs, const char* name, F fn) {
  const size_t n = inputs.size();
  record(out, inputs, name, [n, fn = std::move(fn)](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
    if (grads.empty() || !grads[0].defined()) return std::vector<Tensor>(n);
    return fn(grads[0]);
  });
}

}  // namespace qslim::arith_detail
