#include "core/cpu/depthwise.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/interleave.h"
#include "core/cpu/scratch.h"
#include "core/cpu/simd.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace qslim::cpu::depthwise {
namespace {

// Phase planes of one zero-padded input plane: phase r, row h, index j holds padded column
// s * j + r (s = column stride), so tap (kh, kw) of outputs ow..ow+lanes-1 is one contiguous load.
struct PhaseLayout {
  int64_t phases, rows, cols;
  int64_t vectors;               // vectors per output row
  std::vector<int64_t> tap_col;  // per kernel column: phase * plane + offset
  std::vector<int64_t> col_pos;  // per input column: phase * plane + offset
  int64_t plane() const { return rows * cols; }
  int64_t size() const { return phases * rows * cols; }
};

PhaseLayout phase_layout(const Conv2dGeometry& g, int64_t lanes) {
  PhaseLayout l;
  const int64_t s = g.stride_w;
  l.phases = s;
  l.rows = g.in_h + 2 * g.pad_h;
  l.vectors = (g.out_w + lanes - 1) / lanes;
  const int64_t padded_w = g.in_w + 2 * g.pad_w;
  l.cols = std::max(l.vectors * lanes + (g.kernel_w - 1) * g.dilation_w / s + 1, (padded_w + s - 1) / s);
  for (int64_t j = 0; j < g.kernel_w; ++j) {
    const int64_t c = j * g.dilation_w;
    l.tap_col.push_back((c % s) * l.plane() + c / s);
  }
  for (int64_t w = 0; w < g.in_w; ++w) {
    const int64_t c = w + g.pad_w;
    l.col_pos.push_back((c % s) * l.plane() + c / s);
  }
  return l;
}

bool split_even_odd(const Conv2dGeometry& g) { return g.stride_w == 2 && g.in_w % 2 == 0; }

// Writes the input entries only; the caller zeroed `dst` (with this layout) once.
// buf: H * W scratch entries.
template <typename T>
void to_phases(const T* x, const Conv2dGeometry& g, const PhaseLayout& l, T* dst, T* buf) {
  const int64_t H = g.in_h, W = g.in_w;
  if (split_even_odd(g)) {
    // Input column 2k goes to phase pad_w % 2, entry k + pad_w / 2; column 2k + 1 to the other
    // phase, entry k + (pad_w + 1) / 2.
    const int64_t half = W / 2;
    T* even = buf;
    T* odd = buf + H * half;
    deinterleave(x, H * W, even, odd);
    T* pe = dst + (g.pad_w % 2) * l.plane() + g.pad_w / 2;
    T* po = dst + ((g.pad_w + 1) % 2) * l.plane() + (g.pad_w + 1) / 2;
    for (int64_t h = 0; h < H; ++h) {
      std::memcpy(pe + (h + g.pad_h) * l.cols, even + h * half, half * sizeof(T));
      std::memcpy(po + (h + g.pad_h) * l.cols, odd + h * half, half * sizeof(T));
    }
    return;
  }
  for (int64_t h = 0; h < H; ++h) {
    T* row = dst + (h + g.pad_h) * l.cols;
    for (int64_t w = 0; w < W; ++w) row[l.col_pos[w]] = x[h * W + w];
  }
}

// Copies the input entries of phase planes into plane gx [H, W]; buf: H * W scratch entries.
template <typename T>
void from_phases(const T* src, const Conv2dGeometry& g, const PhaseLayout& l, T* gx, T* buf) {
  const int64_t H = g.in_h, W = g.in_w;
  if (split_even_odd(g)) {
    const int64_t half = W / 2;
    T* even = buf;
    T* odd = buf + H * half;
    const T* pe = src + (g.pad_w % 2) * l.plane() + g.pad_w / 2;
    const T* po = src + ((g.pad_w + 1) % 2) * l.plane() + (g.pad_w + 1) / 2;
    for (int64_t h = 0; h < H; ++h) {
      std::memcpy(even + h * half, pe + (h + g.pad_h) * l.cols, half * sizeof(T));
      std::memcpy(odd + h * half, po + (h + g.pad_h) * l.cols, half * sizeof(T));
    }
    interleave(even, odd, H * W, gx);
    return;
  }
  for (int64_t h = 0; h < H; ++h) {
    const T* row = src + (h + g.pad_h) * l.cols;
    for (int64_t w = 0; w < W; ++w) gx[h * W + w] = row[l.col_pos[w]];
  }
}

// ---------------------------------------------------------------- stride 1: flat planes
// With stride 1, output (oh, ow) reads padded input at oh * cols + ow + tap offset, for
// cols = padded width. Computing "virtual" outputs for every q = oh * cols + ow with ow < cols
// turns each tap into one contiguous run over the whole plane: vectors fill even for narrow
// planes (4x4, 8x8), at the cost of the few virtual columns ow >= OW that are dropped.
struct FlatLayout {
  int64_t cols;     // padded width = row pitch of the padded plane and of the virtual outputs
  int64_t vectors;  // vectors of virtual outputs
  int64_t size;     // floats in the padded plane, with a zero tail for the last vectors' taps
};

FlatLayout flat_layout(const Conv2dGeometry& g, int64_t lanes) {
  FlatLayout l;
  l.cols = g.in_w + 2 * g.pad_w;
  l.vectors = (g.out_h * l.cols + lanes - 1) / lanes;
  l.size = std::max((g.in_h + 2 * g.pad_h) * l.cols,
                    l.vectors * lanes + (g.kernel_h - 1) * g.dilation_h * l.cols + (g.kernel_w - 1) * g.dilation_w);
  return l;
}

// Writes the interior only; the caller zeroed `dst` once.
template <typename T>
void to_flat(const T* x, const Conv2dGeometry& g, const FlatLayout& l, T* dst) {
  for (int64_t h = 0; h < g.in_h; ++h)
    std::memcpy(dst + (h + g.pad_h) * l.cols + g.pad_w, x + h * g.in_w, g.in_w * sizeof(T));
}

template <typename T, int KH, int KW, int RB>
void flat_forward_tile(const T* pad, const FlatLayout& l, const T* w, T bias, const Conv2dGeometry& g, int64_t v,
                       T* virt) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t kh_n = KH ? KH : g.kernel_h, kw_n = KW ? KW : g.kernel_w;
  V acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = vsplat(bias);
  for (int64_t i = 0; i < kh_n; ++i)
    for (int64_t j = 0; j < kw_n; ++j) {
      const V wv = vsplat(w[i * kw_n + j]);
      const T* src = pad + v * L + i * g.dilation_h * l.cols + j * g.dilation_w;
      for (int r = 0; r < RB; ++r) acc[r] += wv * vload(src + r * L);
    }
  for (int r = 0; r < RB; ++r) vstore(virt + (v + r) * L, acc[r]);
}

// y plane from a padded plane; `virt` holds l.vectors vectors of scratch.
template <typename T, int KH, int KW>
void flat_forward_plane(const T* pad, const FlatLayout& l, const T* w, T bias, const Conv2dGeometry& g, T* virt,
                        T* out) {
  int64_t v = 0;
  for (; v + 4 <= l.vectors; v += 4) flat_forward_tile<T, KH, KW, 4>(pad, l, w, bias, g, v, virt);
  for (; v < l.vectors; ++v) flat_forward_tile<T, KH, KW, 1>(pad, l, w, bias, g, v, virt);
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    std::memcpy(out + oh * g.out_w, virt + oh * l.cols, g.out_w * sizeof(T));
}

// acc[tap] += virtual-layout gradient (zeros at ow >= OW) x the padded input shifted by the tap.
template <typename T, int KH, int KW>
void flat_weight_plane(const T* gvirt, const T* pad, const FlatLayout& l, const Conv2dGeometry& g,
                       typename Vec<T>::type* acc_mem) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t kh_n = KH ? KH : g.kernel_h, kw_n = KW ? KW : g.kernel_w;
  constexpr bool fixed = KH > 0 && KW > 0;
  V acc_reg[fixed ? KH * KW : 1];
  V* acc = fixed ? acc_reg : acc_mem;
  if constexpr (fixed)
    for (int t = 0; t < KH * KW; ++t) acc_reg[t] = acc_mem[t];
  for (int64_t v = 0; v < l.vectors; ++v) {
    const V gv = vload(gvirt + v * L);
    const T* src = pad + v * L;
    for (int64_t i = 0; i < kh_n; ++i)
      for (int64_t j = 0; j < kw_n; ++j)
        acc[i * kw_n + j] += gv * vload(src + i * g.dilation_h * l.cols + j * g.dilation_w);
  }
  if constexpr (fixed)
    for (int t = 0; t < KH * KW; ++t) acc_mem[t] = acc_reg[t];
}

template <typename T, int KH, int KW>
void flat_forward_impl(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, HW = g.in_h * g.in_w, P = g.out_h * g.out_w, taps = g.kernel_h * g.kernel_w;
  const FlatLayout l = flat_layout(g, Vec<T>::lanes);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, P * taps));
  parallel_range(g.batch * C, grain, [&](int64_t p0, int64_t p1) {
    T* pad = thread_scratch<T>(ScratchSlot::Plane, l.size);
    T* virt = thread_scratch<T>(ScratchSlot::Columns, l.vectors * Vec<T>::lanes);
    std::fill(pad, pad + l.size, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % C;
      to_flat(x + p * HW, g, l, pad);
      flat_forward_plane<T, KH, KW>(pad, l, w + c * taps, bias ? bias[c] : T(0), g, virt, y + p * P);
    }
  });
}

// The input gradient of a stride-1 depthwise conv is the stride-1 depthwise conv of the output
// gradient padded by (k-1)*d - p with the kernel flipped; possible when that padding is >= 0.
bool flat_input_grad_applies(const Conv2dGeometry& g) {
  return (g.kernel_h - 1) * g.dilation_h >= g.pad_h && (g.kernel_w - 1) * g.dilation_w >= g.pad_w;
}

template <typename T, int KH, int KW>
void flat_input_grad(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, KHr = g.kernel_h, KWr = g.kernel_w, taps = KHr * KWr;
  Conv2dGeometry t = g;
  t.in_h = g.out_h;
  t.in_w = g.out_w;
  t.out_h = g.in_h;
  t.out_w = g.in_w;
  t.pad_h = (KHr - 1) * g.dilation_h - g.pad_h;
  t.pad_w = (KWr - 1) * g.dilation_w - g.pad_w;
  T* flipped = thread_scratch<T>(ScratchSlot::FlippedWeights, C * taps);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < taps; ++k) flipped[c * taps + k] = w[c * taps + taps - 1 - k];
  flat_forward_impl<T, KH, KW>(gy, flipped, nullptr, gx, t);
}

// ---------------------------------------------------------------- general strides: phase rows

template <typename T>
void store_row(T* dst, typename Vec<T>::type v, int64_t valid) {
  if (valid == Vec<T>::lanes) {
    vstore(dst, v);
  } else {
    T tmp[Vec<T>::lanes];
    vstore(tmp, v);
    std::copy(tmp, tmp + valid, dst);
  }
}

// KH/KW > 0: kernel size known at compile time (loops unroll); 0: taken from g.
// RB output rows share each weight broadcast and give independent accumulation chains.
template <typename T, int KH, int KW, int RB>
void forward_tile(const T* ph, const PhaseLayout& l, const T* w, T bias, const Conv2dGeometry& g, int64_t oh,
                  int64_t v, T* out) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t kh_n = KH ? KH : g.kernel_h, kw_n = KW ? KW : g.kernel_w;
  V acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = vsplat(bias);
  for (int64_t i = 0; i < kh_n; ++i)
    for (int64_t j = 0; j < kw_n; ++j) {
      const V wv = vsplat(w[i * kw_n + j]);
      const T* src = ph + l.tap_col[j] + v * L + i * g.dilation_h * l.cols;
      for (int r = 0; r < RB; ++r) acc[r] += wv * vload(src + (oh + r) * g.stride_h * l.cols);
    }
  const int64_t valid = std::min(L, g.out_w - v * L);
  for (int r = 0; r < RB; ++r) store_row(out + (oh + r) * g.out_w + v * L, acc[r], valid);
}

template <typename T, int KH, int KW>
void forward_plane(const T* ph, const PhaseLayout& l, const T* w, T bias, const Conv2dGeometry& g, T* out) {
  for (int64_t v = 0; v < l.vectors; ++v) {
    int64_t oh = 0;
    for (; oh + 4 <= g.out_h; oh += 4) forward_tile<T, KH, KW, 4>(ph, l, w, bias, g, oh, v, out);
    for (; oh < g.out_h; ++oh) forward_tile<T, KH, KW, 1>(ph, l, w, bias, g, oh, v, out);
  }
}

// gph (phase planes of the padded input gradient) += scatter of rows oh..oh+RB-1 of gy.
template <typename T, int KH, int KW, int RB>
void backward_input_tile(const T* gy, int64_t gy_cols, const PhaseLayout& l, const T* w, const Conv2dGeometry& g,
                         int64_t oh, int64_t v, T* gph) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t kh_n = KH ? KH : g.kernel_h, kw_n = KW ? KW : g.kernel_w;
  V gv[RB];
  for (int r = 0; r < RB; ++r) gv[r] = vload(gy + (oh + r) * gy_cols + v * L);
  for (int64_t i = 0; i < kh_n; ++i)
    for (int64_t j = 0; j < kw_n; ++j) {
      const V wv = vsplat(w[i * kw_n + j]);
      T* dst = gph + l.tap_col[j] + v * L + i * g.dilation_h * l.cols;
      for (int r = 0; r < RB; ++r) {
        T* d = dst + (oh + r) * g.stride_h * l.cols;
        vstore(d, vload(d) + wv * gv[r]);
      }
    }
}

template <typename T, int KH, int KW>
void backward_input_plane(const T* gy, int64_t gy_cols, const PhaseLayout& l, const T* w, const Conv2dGeometry& g,
                          T* gph) {
  for (int64_t v = 0; v < l.vectors; ++v) {
    int64_t oh = 0;
    for (; oh + 4 <= g.out_h; oh += 4) backward_input_tile<T, KH, KW, 4>(gy, gy_cols, l, w, g, oh, v, gph);
    for (; oh < g.out_h; ++oh) backward_input_tile<T, KH, KW, 1>(gy, gy_cols, l, w, g, oh, v, gph);
  }
}

// acc[tap] += gy row vectors x the matching input vectors, over one plane.
template <typename T, int KH, int KW>
void backward_weight_plane(const T* gy, int64_t gy_cols, const T* ph, const PhaseLayout& l, const Conv2dGeometry& g,
                           typename Vec<T>::type* acc_mem) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t kh_n = KH ? KH : g.kernel_h, kw_n = KW ? KW : g.kernel_w;
  constexpr bool fixed = KH > 0 && KW > 0;
  V acc_reg[fixed ? KH * KW : 1];
  V* acc = fixed ? acc_reg : acc_mem;
  if constexpr (fixed)
    for (int t = 0; t < KH * KW; ++t) acc_reg[t] = acc_mem[t];
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t v = 0; v < l.vectors; ++v) {
      const V gv = vload(gy + oh * gy_cols + v * L);
      const T* src = ph + v * L + oh * g.stride_h * l.cols;
      for (int64_t i = 0; i < kh_n; ++i)
        for (int64_t j = 0; j < kw_n; ++j)
          acc[i * kw_n + j] += gv * vload(src + l.tap_col[j] + i * g.dilation_h * l.cols);
    }
  if constexpr (fixed)
    for (int t = 0; t < KH * KW; ++t) acc_mem[t] = acc_reg[t];
}

// Copy of a gradient plane [OH, OW] with rows padded by zeros to whole vectors.
template <typename T>
void pad_rows(const T* src, const Conv2dGeometry& g, int64_t cols, T* dst) {
  for (int64_t r = 0; r < g.out_h; ++r) std::memcpy(dst + r * cols, src + r * g.out_w, g.out_w * sizeof(T));
}

template <typename T, int KH, int KW>
void forward_impl(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  if (g.stride_h == 1 && g.stride_w == 1) {
    flat_forward_impl<T, KH, KW>(x, w, bias, y, g);
    return;
  }
  const int64_t C = g.in_channels, HW = g.in_h * g.in_w, P = g.out_h * g.out_w, taps = g.kernel_h * g.kernel_w;
  const PhaseLayout l = phase_layout(g, Vec<T>::lanes);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, P * taps));
  parallel_range(g.batch * C, grain, [&](int64_t p0, int64_t p1) {
    T* ph = thread_scratch<T>(ScratchSlot::Plane, l.size());
    T* split_buf = thread_scratch<T>(ScratchSlot::Row, HW);
    std::fill(ph, ph + l.size(), T(0));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % C;
      to_phases(x + p * HW, g, l, ph, split_buf);
      forward_plane<T, KH, KW>(ph, l, w + c * taps, bias ? bias[c] : T(0), g, y + p * P);
    }
  });
}

// Weight gradient: batch chunks in parallel, each visiting its images plane by plane in memory
// order (a channel-major order jumps C planes per step and defeats the prefetchers) and
// accumulating lane-wise sums per (channel, tap); the chunks' sums are added in chunk order.
template <typename T, int KH, int KW>
void weight_grad(const T* gy, const T* x, T* gw, const Conv2dGeometry& g) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t C = g.in_channels, HW = g.in_h * g.in_w, P = g.out_h * g.out_w, taps = g.kernel_h * g.kernel_w;
  const bool flat = g.stride_h == 1 && g.stride_w == 1;
  const FlatLayout fl = flat_layout(g, L);
  const PhaseLayout pl = phase_layout(g, L);
  const int64_t gy_cols = pl.vectors * L;
  const int64_t chunks = batch_chunks(g.batch, 2.0 * C * taps * P);
  std::vector<V> acc_all(chunks * C * taps, V{});
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    V* acc = acc_all.data() + chunk * C * taps;
    if (flat) {
      T* pad = thread_scratch<T>(ScratchSlot::Plane, fl.size);
      T* gvirt = thread_scratch<T>(ScratchSlot::GradColumns, fl.vectors * L);
      std::fill(pad, pad + fl.size, T(0));
      std::fill(gvirt, gvirt + fl.vectors * L, T(0));  // virtual columns ow >= OW stay zero
      for (int64_t p = b0 * C; p < b1 * C; ++p) {
        to_flat(x + p * HW, g, fl, pad);
        for (int64_t oh = 0; oh < g.out_h; ++oh)
          std::memcpy(gvirt + oh * fl.cols, gy + p * P + oh * g.out_w, g.out_w * sizeof(T));
        flat_weight_plane<T, KH, KW>(gvirt, pad, fl, g, acc + (p % C) * taps);
      }
    } else {
      T* xph = thread_scratch<T>(ScratchSlot::Plane, pl.size());
      T* gyp = thread_scratch<T>(ScratchSlot::GradColumns, g.out_h * gy_cols);
      T* split_buf = thread_scratch<T>(ScratchSlot::Row, HW);
      std::fill(xph, xph + pl.size(), T(0));
      std::fill(gyp, gyp + g.out_h * gy_cols, T(0));
      for (int64_t p = b0 * C; p < b1 * C; ++p) {
        pad_rows(gy + p * P, g, gy_cols, gyp);
        to_phases(x + p * HW, g, pl, xph, split_buf);
        backward_weight_plane<T, KH, KW>(gyp, gy_cols, xph, pl, g, acc + (p % C) * taps);
      }
    }
  });
  for (int64_t k = 0; k < C * taps; ++k) {
    V s = acc_all[k];
    for (int64_t c = 1; c < chunks; ++c) s += acc_all[c * C * taps + k];
    gw[k] = vsum<T>(s);
  }
}

// Input gradient of strided convs: planes in parallel, in memory order; each scatters its output
// gradient rows into phase planes of the padded input gradient.
template <typename T, int KH, int KW>
void strided_input_grad(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, HW = g.in_h * g.in_w, P = g.out_h * g.out_w, taps = g.kernel_h * g.kernel_w;
  const PhaseLayout l = phase_layout(g, Vec<T>::lanes);
  const int64_t gy_cols = l.vectors * Vec<T>::lanes;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, P * taps));
  parallel_range(g.batch * C, grain, [&](int64_t p0, int64_t p1) {
    T* gph = thread_scratch<T>(ScratchSlot::GradPlane, l.size());
    T* gyp = thread_scratch<T>(ScratchSlot::GradColumns, g.out_h * gy_cols);
    T* split_buf = thread_scratch<T>(ScratchSlot::Row, HW);
    std::fill(gyp, gyp + g.out_h * gy_cols, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      pad_rows(gy + p * P, g, gy_cols, gyp);
      std::fill(gph, gph + l.size(), T(0));
      backward_input_plane<T, KH, KW>(gyp, gy_cols, l, w + (p % C) * taps, g, gph);
      from_phases(gph, g, l, gx + p * HW, split_buf);
    }
  });
}

template <typename T, int KH, int KW>
void backward_impl(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  if (gw) weight_grad<T, KH, KW>(gy, x, gw, g);
  if (!gx) return;
  if (g.stride_h == 1 && g.stride_w == 1 && flat_input_grad_applies(g))
    flat_input_grad<T, KH, KW>(gy, w, gx, g);
  else
    strided_input_grad<T, KH, KW>(gy, w, gx, g);
}

}  // namespace

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  if (g.kernel_h == 3 && g.kernel_w == 3)
    forward_impl<T, 3, 3>(x, w, bias, y, g);
  else if (g.kernel_h == 5 && g.kernel_w == 5)
    forward_impl<T, 5, 5>(x, w, bias, y, g);
  else
    forward_impl<T, 0, 0>(x, w, bias, y, g);
}

template <typename T>
void backward(const T* gy, const T* x, const T* w, T* gx, T* gw, const Conv2dGeometry& g) {
  if (!gx && !gw) return;
  if (g.kernel_h == 3 && g.kernel_w == 3)
    backward_impl<T, 3, 3>(gy, x, w, gx, gw, g);
  else if (g.kernel_h == 5 && g.kernel_w == 5)
    backward_impl<T, 5, 5>(gy, x, w, gx, gw, g);
  else
    backward_impl<T, 0, 0>(gy, x, w, gx, gw, g);
}

template void forward<float>(const float*, const float*, const float*, float*, const Conv2dGeometry&);
template void forward<double>(const double*, const double*, const double*, double*, const Conv2dGeometry&);
template void backward<float>(const float*, const float*, const float*, float*, float*, const Conv2dGeometry&);
template void backward<double>(const double*, const double*, const double*, double*, double*,
                               const Conv2dGeometry&);

}  // namespace qslim::cpu::depthwise
