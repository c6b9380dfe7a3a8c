// matmul and linear on cpu::gemm. Operands whose last two dims are row-major or transposed
// (e.g. w.t()) go to the GEMM as they are, with a transpose flag instead of a copy.
#include "autograd/ops_linalg.h"

#include <algorithm>
#include <optional>

#include "autograd/node.h"
#include "core/cpu/gemm.h"
#include "core/cpu/strided_loop.h"
#include "core/kernels.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim {
namespace {

struct Layout {
  bool trans = false;  // stored as the transpose: [cols, rows] row-major
  int64_t ld = 1;
};

// How the matrix in the last two dims of `t` can be passed to the GEMM without a copy, if at all.
std::optional<Layout> matrix_layout(const Tensor& t) {
  const int64_t d = t.dim();
  const int64_t rows = t.size(d - 2), cols = t.size(d - 1);
  if (rows == 0 || cols == 0) return Layout{false, std::max<int64_t>(cols, 1)};  // never read
  // A dimension of size 1 never advances, so its stride can be anything.
  const int64_t rs = rows == 1 ? std::max<int64_t>(cols, 1) : t.stride(d - 2);
  const int64_t cs = cols == 1 ? 1 : t.stride(d - 1);
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) return Layout{false, rs};
  const int64_t rs_t = rows == 1 ? 1 : t.stride(d - 2);
  const int64_t cs_t = cols == 1 ? std::max<int64_t>(rows, 1) : t.stride(d - 1);
  if (rs_t == 1 && cs_t >= std::max<int64_t>(rows, 1)) return Layout{true, cs_t};
  return std::nullopt;
}

// `t` itself when its matrices are GEMM-compatible, else a contiguous copy; sets `layout`.
Tensor gemm_operand(const Tensor& t, Layout& layout) {
  if (auto l = matrix_layout(t)) {
    layout = *l;
    return t;
  }
  Tensor c = t.contiguous();
  layout = *matrix_layout(c);
  return c;
}

Layout transposed(Layout l) { return {!l.trans, l.ld}; }

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }
Shape batch_strides_of(const Tensor& t) { return Shape(t.strides().begin(), t.strides().end() - 2); }

// Element offsets of batch entry i for operands with (broadcast) batch strides.
template <size_t K>
std::array<int64_t, K> batch_offsets(int64_t i, const Shape& batch, const std::array<const Shape*, K>& strides) {
  std::array<int64_t, K> off{};
  for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
    const int64_t idx = i % batch[d];
    i /= batch[d];
    for (size_t k = 0; k < K; ++k) off[k] += idx * (*strides[k])[d];
  }
  return off;
}

struct BatchedOperand {
  const Tensor* t;  // matrices in the last two dims; first element at t->data()
  Shape batch_strides;
  Layout layout;
};

// The operand `t` over `batch` (optionally transposed); `holder` keeps a copy alive when the
// matrices of `t` were not GEMM-ready.
BatchedOperand batched_operand(const Tensor& t, const Shape& batch, bool transpose, Tensor& holder) {
  BatchedOperand o{nullptr, {}, {}};
  holder = gemm_operand(t, o.layout);
  o.t = &holder;
  if (transpose) o.layout = transposed(o.layout);
  o.batch_strides = cpu::broadcast_strides(batch_of(holder), batch_strides_of(holder), batch);
  return o;
}

// c[i] = op(a[i]) op(b[i]) for every entry i of `batch` (c[i] += ... when accumulate: several
// entries then share a destination and run in order). c is contiguous with ldc = n.
template <typename T>
void batched_gemm(const Shape& batch, int64_t m, int64_t n, int64_t k, const BatchedOperand& a,
                  const BatchedOperand& b, T* c, const Shape& c_batch_strides, bool accumulate) {
  const T* pa = a.t->data<T>();
  const T* pb = b.t->data<T>();
  const int64_t count = numel_of(batch);
  auto run = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      auto off = batch_offsets<3>(i, batch, {&a.batch_strides, &b.batch_strides, &c_batch_strides});
      cpu::gemm(a.layout.trans, b.layout.trans, m, n, k, T(1), pa + off[0], a.layout.ld, pb + off[1], b.layout.ld,
                accumulate ? T(1) : T(0), c + off[2], n);
    }
  };
  // Many small products: one per thread; few large ones: the GEMM threads itself.
  const double flops = 2.0 * m * n * k;
  if (!accumulate && count >= 2 && flops < 2e6)
    cpu::parallel_range(count, std::max<int64_t>(1, static_cast<int64_t>(2e5 / std::max(flops, 1.0))), run);
  else
    run(0, count);
}

// Gradient buffer shaped like `like` for products over `batch`, zeroed when entries accumulate.
Tensor grad_buffer(const Shape& shape, DType dt, const Shape& batch, Shape& c_batch_strides, bool& accumulate) {
  Tensor g = Tensor::empty(shape, dt);
  Shape lb(shape.begin(), shape.end() - 2);
  Shape cs = contiguous_strides(shape);
  c_batch_strides = cpu::broadcast_strides(lb, Shape(cs.begin(), cs.end() - 2), batch);
  accumulate = numel_of(lb) != numel_of(batch);
  if (accumulate) g.zero_();
  return g;
}

// Both operands at least 2-D; batch dims broadcast.
Tensor matmul_batched(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  const Shape batch = broadcast_shapes(batch_of(a), batch_of(b), "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  Tensor ha, hb;
  const BatchedOperand oa = batched_operand(a, batch, false, ha), ob = batched_operand(b, batch, false, hb);
  Shape cs = contiguous_strides(out_shape);
  QSLIM_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    batched_gemm<scalar_t>(batch, m, n, k, oa, ob, out.data<scalar_t>(), Shape(cs.begin(), cs.end() - 2), false);
  });
  if (needs_grad({&a, &b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    SavedTensor sa = need_b ? SavedTensor(a) : SavedTensor();
    SavedTensor sb = need_a ? SavedTensor(b) : SavedTensor();
    const Shape a_shape = a.shape(), b_shape = b.shape();
    const DType dt = a.dtype();
    record(out, {a, b}, "matmul", [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor(), Tensor()};
      Tensor g = grads[0].contiguous();
      const Shape gs = contiguous_strides(g.shape());
      BatchedOperand og{&g, Shape(gs.begin(), gs.end() - 2), Layout{false, std::max<int64_t>(n, 1)}};
      Tensor grad_a, grad_b;
      if (need_a) {  // dA = g b^T
        Tensor hold;
        const BatchedOperand obt = batched_operand(sb.get("matmul"), batch, true, hold);
        Shape cbs;
        bool acc;
        grad_a = grad_buffer(a_shape, dt, batch, cbs, acc);
        QSLIM_DISPATCH_FLOAT(dt, "matmul backward", [&] {
          batched_gemm<scalar_t>(batch, m, k, n, og, obt, grad_a.data<scalar_t>(), cbs, acc);
        });
      }
      if (need_b) {  // dB = a^T g
        Tensor hold;
        const BatchedOperand oat = batched_operand(sa.get("matmul"), batch, true, hold);
        Shape cbs;
        bool acc;
        grad_b = grad_buffer(b_shape, dt, batch, cbs, acc);
        QSLIM_DISPATCH_FLOAT(dt, "matmul backward", [&] {
          batched_gemm<scalar_t>(batch, k, n, m, oat, og, grad_b.data<scalar_t>(), cbs, acc);
        });
      }
      return {grad_a, grad_b};
    });
  }
  return out;
}

// Inner product of two vectors, shape [].
Tensor dot_1d(const Tensor& a, const Tensor& b) {
  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty({}, a.dtype());
  const int64_t k = a.numel();
  QSLIM_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    cpu::gemm(false, false, 1, 1, k, scalar_t(1), ac.data<scalar_t>(), std::max<int64_t>(k, 1), bc.data<scalar_t>(), 1,
              scalar_t(0), out.data<scalar_t>(), 1);
  });
  if (needs_grad({&a, &b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    SavedTensor sa = need_b ? SavedTensor(a) : SavedTensor();
    SavedTensor sb = need_a ? SavedTensor(b) : SavedTensor();
    record(out, {a, b}, "matmul", [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor(), Tensor()};
      const double g = grads[0].item();
      return {need_a ? kernels::mul_scalar(sb.get("matmul"), g) : Tensor(),
              need_b ? kernels::mul_scalar(sa.get("matmul"), g) : Tensor()};
    });
  }
  return out;
}

template <typename T>
void column_sums(const T* g, int64_t rows, int64_t cols, T* out) {
  std::fill(out, out + cols, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = g + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) out[c] += row[c];
  }
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  QSLIM_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
  QSLIM_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dimension, got shapes ",
              shape_str(a.shape()), " and ", shape_str(b.shape()));
  QSLIM_CHECK(a.dtype() == b.dtype(), "matmul: dtype mismatch ", dtype_name(a.dtype()), " vs ", dtype_name(b.dtype()),
              " (shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), ")");
  QSLIM_CHECK(a.is_floating_point(), "matmul: expected a floating dtype (f32 or f64), got ", dtype_name(a.dtype()));
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  QSLIM_CHECK(ka == kb, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
              " cannot be multiplied (inner dimensions ", ka, " and ", kb, " differ)");
  if (a.dim() == 1 && b.dim() == 1) return dot_1d(a, b);
  if (a.dim() == 1) return matmul_batched(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  // A batch of `a` against one matrix `b`: fold a's batch into its rows, one GEMM (also in backward).
  const Shape bb = batch_of(b);
  if (a.dim() > 2 && numel_of(bb) == 1 && a.numel() > 0) {
    Shape out_shape = broadcast_shapes(batch_of(a), bb, "matmul");
    out_shape.push_back(a.size(-2));
    out_shape.push_back(b.size(-1));
    Tensor b2 = b.dim() > 2 ? b.reshape({b.size(-2), b.size(-1)}) : b;
    return matmul_batched(a.reshape({-1, ka}), b2).reshape(out_shape);
  }
  return matmul_batched(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  QSLIM_CHECK(x.defined() && weight.defined(), "linear: undefined input or weight");
  QSLIM_CHECK(weight.dim() == 2, "linear: expected weight [out, in], got ", shape_str(weight.shape()));
  QSLIM_CHECK(x.dim() >= 1, "linear: expected input [..., in], got a scalar");
  const int64_t out_f = weight.size(0), in_f = weight.size(1);
  QSLIM_CHECK(x.size(-1) == in_f, "linear: input ", shape_str(x.shape()), " has ", x.size(-1),
              " features but weight ", shape_str(weight.shape()), " expects ", in_f);
  QSLIM_CHECK(x.dtype() == weight.dtype(), "linear: input dtype ", dtype_name(x.dtype()), " differs from weight dtype ",
              dtype_name(weight.dtype()));
  QSLIM_CHECK(x.is_floating_point(), "linear: expected a floating dtype (f32 or f64), got ", dtype_name(x.dtype()));
  if (bias.defined()) {
    QSLIM_CHECK(bias.shape() == Shape{out_f}, "linear: bias ", shape_str(bias.shape()), " does not match the ", out_f,
                " outputs of weight ", shape_str(weight.shape()));
    QSLIM_CHECK(bias.dtype() == x.dtype(), "linear: bias dtype ", dtype_name(bias.dtype()),
                " differs from input dtype ", dtype_name(x.dtype()));
  }
  const int64_t rows = numel_of(Shape(x.shape().begin(), x.shape().end() - 1));
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor xc = x.contiguous(), bc = bias.defined() ? bias.contiguous() : Tensor();
  Layout wl;
  Tensor wg = gemm_operand(weight, wl);  // weight as stored: op(B) = W^T is the opposite flag
  Tensor y = Tensor::empty(out_shape, x.dtype());
  QSLIM_DISPATCH_FLOAT(x.dtype(), "linear", [&] {
    scalar_t* yp = y.data<scalar_t>();
    if (bc.defined()) {
      const scalar_t* bp = bc.data<scalar_t>();
      for (int64_t r = 0; r < rows; ++r) std::copy(bp, bp + out_f, yp + r * out_f);
    }
    cpu::gemm(false, !wl.trans, rows, out_f, in_f, scalar_t(1), xc.data<scalar_t>(), std::max<int64_t>(in_f, 1),
              wg.data<scalar_t>(), wl.ld, bc.defined() ? scalar_t(1) : scalar_t(0), yp, std::max<int64_t>(out_f, 1));
  });
  if (needs_grad({&x, &weight, &bias})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    SavedTensor sx = need_w ? SavedTensor(xc) : SavedTensor();
    SavedTensor sw = need_x ? SavedTensor(wg) : SavedTensor();
    const Shape x_shape = x.shape();
    const DType dt = x.dtype();
    record(y, {x, weight, bias}, "linear", [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
      if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
      Tensor g = grads[0].contiguous();
      Tensor gx, gw, gb;
      QSLIM_DISPATCH_FLOAT(dt, "linear backward", [&] {
        const scalar_t* gp = g.data<scalar_t>();
        const int64_t ldg = std::max<int64_t>(out_f, 1), ldx = std::max<int64_t>(in_f, 1);
        if (need_x) {
          Tensor w = sw.get("linear");
          gx = Tensor::empty(x_shape, dt);
          cpu::gemm(false, wl.trans, rows, in_f, out_f, scalar_t(1), gp, ldg, w.data<scalar_t>(), wl.ld,
                    scalar_t(0), gx.data<scalar_t>(), ldx);
        }
        if (need_w) {
          Tensor xs = sx.get("linear");
          gw = Tensor::empty({out_f, in_f}, dt);
          cpu::gemm(true, false, out_f, in_f, rows, scalar_t(1), gp, ldg, xs.data<scalar_t>(), ldx, scalar_t(0),
                    gw.data<scalar_t>(), ldx);
        }
        if (need_b) {
          gb = Tensor::empty({out_f}, dt);
          column_sums(gp, rows, out_f, gb.data<scalar_t>());
        }
      });
      return {gx, gw, gb};
    });
  }
  return y;
}

}  // namespace qslim
