// Differentiable activations (ops_activation.h) on top of core/cpu/activation_kernels.
#include "autograd/ops_activation.h"

#include "autograd/arith_common.h"
#include "autograd/grad_buffer.h"
#include "core/cpu/activation_kernels.h"

namespace qslim {

namespace {

using cpu::Activation;

// The incoming gradient is overwritten when the engine holds its only handle.
Tensor activation_grad(const Tensor& g, const Tensor& saved, Activation act, double param) {
  if (exclusively_owned(g) && g.dtype() == saved.dtype() && g.shape() == saved.shape()) {
    cpu::activation_backward_inplace(g, saved, act, param);
    return g;
  }
  return cpu::activation_backward(g, saved, act, param);
}

Tensor activation(const Tensor& x, Activation act, double param = 0.0) {
  const char* name = cpu::activation_name(act);
  arith_detail::check_float(x, name);
  Tensor out = cpu::activation_forward(x, act, param);
  if (needs_grad({&x})) {
    SavedTensor saved(cpu::activation_backward_uses_output(act) ? out : x);
    arith_detail::record_guarded(out, {x}, name, [saved, act, param, name](const Tensor& g) -> std::vector<Tensor> {
      return {activation_grad(g, saved.get(name), act, param)};
    });
  }
  return out;
}

}  // namespace

Tensor relu(const Tensor& x) { return activation(x, Activation::Relu); }
Tensor relu6(const Tensor& x) { return activation(x, Activation::Relu6); }
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  return activation(x, Activation::LeakyRelu, negative_slope);
}
Tensor sigmoid(const Tensor& x) { return activation(x, Activation::Sigmoid); }
Tensor tanh(const Tensor& x) { return activation(x, Activation::Tanh); }
Tensor hardswish(const Tensor& x) { return activation(x, Activation::Hardswish); }
Tensor hardsigmoid(const Tensor& x) { return activation(x, Activation::Hardsigmoid); }
Tensor silu(const Tensor& x) { return activation(x, Activation::Silu); }
Tensor gelu(const Tensor& x, bool approximate_tanh) {
  return activation(x, approximate_tanh ? Activation::GeluTanh : Activation::Gelu);
}

Tensor& relu_(Tensor& x) {
  arith_detail::check_inplace_target(x, "relu_");
  arith_detail::check_float(x, "relu_");
  const bool grad = needs_grad({&x});
  arith_detail::check_view_history(x, grad, "relu_");
  cpu::activation_forward_inplace(x, Activation::Relu);
  if (grad) {
    // Relu's backward reads the output, which is exactly what x now holds.
    SavedTensor y(x);
    arith_detail::record_guarded(x, {x}, "relu_", [y](const Tensor& g) -> std::vector<Tensor> {
      return {activation_grad(g, y.get("relu_"), Activation::Relu, 0.0)};
    });
  }
  return x;
}

}  // namespace qslim
