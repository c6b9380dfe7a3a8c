// Differentiable convolution and pooling on the core/cpu kernels. 3-D inputs [C, H, W] are
// treated as a batch of one.
#include "autograd/ops_conv.h"

#include "autograd/node.h"
#include "core/cpu/conv2d.h"
#include "core/cpu/pool.h"

namespace qslim {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  QSLIM_CHECK(x.defined() && weight.defined(), "conv2d: undefined input or weight");
  if (x.dim() == 3) return conv2d(x.unsqueeze(0), weight, bias, p).squeeze(0);
  const cpu::Conv2dGeometry g =
      cpu::conv2d_geometry(x.shape(), weight.shape(), p.stride, p.padding, p.dilation, p.groups);
  Tensor y = cpu::conv2d_forward(x, weight, bias, g);
  if (needs_grad({&x, &weight, &bias})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    SavedTensor sx = need_w ? SavedTensor(x) : SavedTensor();
    SavedTensor sw = need_x ? SavedTensor(weight) : SavedTensor();
    record(y, {x, weight, bias}, "conv2d", [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
      cpu::Conv2dGrads r = cpu::conv2d_backward(grads[0], need_w ? sx.get("conv2d") : Tensor(),
                                                need_x ? sw.get("conv2d") : Tensor(), g, need_x, need_w, need_b);
      return {r.input, r.weight, r.bias};
    });
  }
  return y;
}

Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  QSLIM_CHECK(x.defined(), "max_pool2d: undefined input");
  if (x.dim() == 3) return max_pool2d(x.unsqueeze(0), kernel, stride, padding).squeeze(0);
  const cpu::Pool2dGeometry g = cpu::pool2d_geometry("max_pool2d", x.shape(), kernel, stride, padding);
  const bool track = needs_grad({&x});
  cpu::MaxPool2dResult r = cpu::max_pool2d_forward(x, g, track);
  if (track) {
    Tensor indices = r.indices;
    record(r.output, {x}, "max_pool2d", [g, indices](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor()};
      return {cpu::max_pool2d_backward(grads[0], indices, g)};
    });
  }
  return r.output;
}

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding, bool count_include_pad) {
  QSLIM_CHECK(x.defined(), "avg_pool2d: undefined input");
  if (x.dim() == 3) return avg_pool2d(x.unsqueeze(0), kernel, stride, padding, count_include_pad).squeeze(0);
  const cpu::Pool2dGeometry g = cpu::pool2d_geometry("avg_pool2d", x.shape(), kernel, stride, padding);
  Tensor y = cpu::avg_pool2d_forward(x, g, count_include_pad);
  if (needs_grad({&x})) {
    record(y, {x}, "avg_pool2d", [g, count_include_pad](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor()};
      return {cpu::avg_pool2d_backward(grads[0], g, count_include_pad)};
    });
  }
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  QSLIM_CHECK(x.defined(), "adaptive_avg_pool2d: undefined input");
  if (x.dim() == 3) return adaptive_avg_pool2d(x.unsqueeze(0), output_size).squeeze(0);
  Tensor y = cpu::adaptive_avg_pool2d_forward(x, output_size);
  if (needs_grad({&x})) {
    const Shape in_shape = x.shape();
    record(y, {x}, "adaptive_avg_pool2d", [in_shape](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor()};
      return {cpu::adaptive_avg_pool2d_backward(grads[0], in_shape)};
    });
  }
  return y;
}

}  // namespace qslim
