#include "core/cpu/conv2d_direct.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/conv2d_chv.h"
#include "core/cpu/scratch.h"
#include "core/cpu/simd.h"
#include "core/cpu/winograd.h"

namespace qslim::cpu::direct {
namespace {

constexpr int64_t kLanes = Vec<float>::lanes;
using vf = Vec<float>::type;

int64_t vectors_per_row(int64_t w) { return (w + kLanes - 1) / kLanes; }
// Share of the vector lanes that carry real pixels for rows of `w` pixels.
bool fills_vectors(int64_t w) { return w >= 10 && 10 * w >= 6 * vectors_per_row(w) * kLanes; }

bool stride1_regular(const Conv2dGeometry& g) {
  return g.stride_h == 1 && g.stride_w == 1 && !g.pointwise() && !g.depthwise();
}

// Zero-padded copy of an image: rows wide enough that every vector load of a row stays inside.
struct PaddedLayout {
  int64_t cols, plane;
};

PaddedLayout padded_layout(const Conv2dGeometry& g) {
  PaddedLayout l;
  l.cols = std::max(vectors_per_row(g.out_w) * kLanes + (g.kernel_w - 1) * g.dilation_w, g.in_w + 2 * g.pad_w);
  l.plane = (g.in_h + 2 * g.pad_h) * l.cols;
  return l;
}

// Writes the interior only; the caller zeroed `dst` (with this layout) once.
void pad_image(const float* x, int64_t channels, const Conv2dGeometry& g, const PaddedLayout& l, float* dst) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t h = 0; h < g.in_h; ++h)
      std::memcpy(dst + c * l.plane + (h + g.pad_h) * l.cols + g.pad_w, x + (c * g.in_h + h) * g.in_w,
                  g.in_w * sizeof(float));
}

struct Block {
  int64_t o0, size;
};

// Output channels of a group in register blocks of at most `max_block`.
std::vector<Block> make_blocks(int64_t channels, int64_t max_block) {
  std::vector<Block> b;
  for (int64_t o = 0; o < channels;) {
    int64_t n = std::min(channels - o, max_block);
    if (n > 8 && n < max_block) n = n >= 12 ? 12 : 8;  // only 1..8, 12 and 16 are instantiated
    b.push_back({o, n});
    o += n;
  }
  return b;
}

// ---------------------------------------------------------------- forward

struct FwdArgs {
  const float* in;  // padded input: first channel of the group, at (row oh, column of the tile)
  int64_t cin, plane, cols, kh, kw, dh, dw;
  const float* w;     // packed [cin][kh][kw][OB]
  const float* bias;  // OB values, or null
  float* out;         // first channel of the block at (oh, column of the tile)
  int64_t out_plane;
  int64_t valid;  // real outputs in this tile (<= NV * 16)
};

template <int OB, int NV>
void fwd_tile(const FwdArgs& a) {
  vf acc[OB][NV];
  for (int o = 0; o < OB; ++o)
    for (int v = 0; v < NV; ++v) acc[o][v] = vsplat(a.bias ? a.bias[o] : 0.0f);
  const float* wp = a.w;
  for (int64_t c = 0; c < a.cin; ++c)
    for (int64_t i = 0; i < a.kh; ++i) {
      const float* r = a.in + c * a.plane + i * a.dh * a.cols;
      for (int64_t j = 0; j < a.kw; ++j, wp += OB) {
        vf xv[NV];
        for (int v = 0; v < NV; ++v) xv[v] = vload(r + j * a.dw + v * kLanes);
        for (int o = 0; o < OB; ++o) {
          const vf wv = vsplat(wp[o]);
          for (int v = 0; v < NV; ++v) acc[o][v] += wv * xv[v];
        }
      }
    }
  for (int o = 0; o < OB; ++o) {
    float* dst = a.out + o * a.out_plane;
    if (a.valid == NV * kLanes) {
      for (int v = 0; v < NV; ++v) vstore(dst + v * kLanes, acc[o][v]);
    } else {
      float tmp[NV * kLanes];
      for (int v = 0; v < NV; ++v) vstore(tmp + v * kLanes, acc[o][v]);
      std::memcpy(dst, tmp, a.valid * sizeof(float));
    }
  }
}

using FwdFn = void (*)(const FwdArgs&);

template <int NV>
FwdFn fwd_kernel(int64_t ob) {
  switch (ob) {
    case 1: return fwd_tile<1, NV>;
    case 2: return fwd_tile<2, NV>;
    case 3: return fwd_tile<3, NV>;
    case 4: return fwd_tile<4, NV>;
    case 5: return fwd_tile<5, NV>;
    case 6: return fwd_tile<6, NV>;
    case 7: return fwd_tile<7, NV>;
    case 8: return fwd_tile<8, NV>;
    case 12: return fwd_tile<12, NV>;
    default: return NV == 1 ? fwd_tile<16, 1> : nullptr;
  }
}

// Packs weights [O, Cg, kh, kw] per block as [Cg][kh][kw][block] (contiguous broadcasts).
void pack_forward(const float* w, const Conv2dGeometry& g, const std::vector<Block>& blocks, float* out) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G, taps = g.kernel_h * g.kernel_w;
  for (int64_t grp = 0; grp < G; ++grp)
    for (const Block& b : blocks) {
      float* dst = out + (grp * Og + b.o0) * Cg * taps;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < taps; ++t)
          for (int64_t o = 0; o < b.size; ++o)
            dst[(c * taps + t) * b.size + o] = w[((grp * Og + b.o0 + o) * Cg + c) * taps + t];
    }
}

void forward_rows(const float* pad, const PaddedLayout& l, const float* wpack, const std::vector<Block>& blocks,
                  const float* bias, float* y, const Conv2dGeometry& g, int64_t oh0, int64_t oh1) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t taps = g.kernel_h * g.kernel_w, OW = g.out_w, out_plane = g.out_h * OW;
  const int64_t nv_total = vectors_per_row(OW);
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t v = 0; v < nv_total;) {
        const int64_t nv = std::min<int64_t>(2, nv_total - v);
        for (const Block& b : blocks) {
          const int64_t o = grp * Og + b.o0;
          FwdArgs a{pad + grp * Cg * l.plane + oh * l.cols + v * kLanes,
                    Cg, l.plane, l.cols, g.kernel_h, g.kernel_w, g.dilation_h, g.dilation_w,
                    wpack + o * Cg * taps,
                    bias ? bias + o : nullptr,
                    y + o * out_plane + oh * OW + v * kLanes,
                    out_plane,
                    std::min(nv * kLanes, OW - v * kLanes)};
          (nv == 2 ? fwd_kernel<2>(b.size) : fwd_kernel<1>(b.size))(a);
        }
        v += nv;
      }
}

// ---------------------------------------------------------------- forward, channel vectors
// For rows too narrow to fill pixel vectors, with output channels in multiples of 16: a vector
// holds 16 output channels of one pixel, PB pixels of a row per tile; each tap is one weight
// vector load and PB broadcast-FMAs, and the results are transposed on the way out.
template <int PB>
void chv_tile(const FwdArgs& a) {
  vf acc[PB];
  const vf b = a.bias ? vload(a.bias) : vf{};
  for (int p = 0; p < PB; ++p) acc[p] = b;
  const float* wp = a.w;
  for (int64_t c = 0; c < a.cin; ++c)
    for (int64_t i = 0; i < a.kh; ++i) {
      const float* r = a.in + c * a.plane + i * a.dh * a.cols;
      for (int64_t j = 0; j < a.kw; ++j, wp += kLanes) {
        const vf wv = vload(wp);
        const float* src = r + j * a.dw;
        for (int p = 0; p < PB; ++p) acc[p] += wv * vsplat(src[p]);
      }
    }
  for (int p = 0; p < a.valid; ++p)
    for (int64_t o = 0; o < kLanes; ++o) a.out[o * a.out_plane + p] = acc[p][o];
}

constexpr int64_t kChvPixels = 12;

FwdFn chv_kernel(int64_t pixels) {
  switch (pixels) {
    case 1: return chv_tile<1>;
    case 2: return chv_tile<2>;
    case 3: return chv_tile<3>;
    case 4: return chv_tile<4>;
    case 5: return chv_tile<5>;
    case 6: return chv_tile<6>;
    case 7: return chv_tile<7>;
    case 8: return chv_tile<8>;
    case 9: return chv_tile<9>;
    case 10: return chv_tile<10>;
    case 11: return chv_tile<11>;
    default: return chv_tile<kChvPixels>;
  }
}

// Pixel vectors waste over a fifth of their lanes on rows this wide.
bool narrow_rows(int64_t w) { return 5 * w < 4 * vectors_per_row(w) * kLanes; }

bool channel_vectors(const Conv2dGeometry& g) {
  return (g.out_channels / g.groups) % kLanes == 0 && narrow_rows(g.out_w);
}

void forward_rows_chv(const float* pad, const PaddedLayout& l, const float* wpack, const float* bias, float* y,
                      const Conv2dGeometry& g, int64_t oh0, int64_t oh1) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t taps = g.kernel_h * g.kernel_w, OW = g.out_w, out_plane = g.out_h * OW;
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = 0; ow < OW; ow += kChvPixels) {
        const int64_t pixels = std::min(kChvPixels, OW - ow);
        const FwdFn fn = chv_kernel(pixels);
        for (int64_t ob = 0; ob < Og; ob += kLanes) {
          const int64_t o = grp * Og + ob;
          FwdArgs a{pad + grp * Cg * l.plane + oh * l.cols + ow,
                    Cg, l.plane, l.cols, g.kernel_h, g.kernel_w, g.dilation_h, g.dilation_w,
                    wpack + o * Cg * taps,
                    bias ? bias + o : nullptr,
                    y + o * out_plane + oh * OW + ow,
                    out_plane,
                    pixels};
          fn(a);
        }
      }
}

// ---------------------------------------------------------------- weight gradient

struct WgradArgs {
  const float* gy;  // padded gradient of the first image: first channel of the block, row 0
  int64_t gy_plane, gy_cols, gy_image;
  const float* x;  // padded input of the first image: channel c, row kh * dilation, column 0
  int64_t cols, x_image, dw;
  int64_t images, rows, nv;
  float* acc;  // vector partial sums: acc + o * acc_ostride + j * 16
  int64_t acc_ostride;
};

template <int OB, int KW>
void wgrad_tile(const WgradArgs& a) {
  vf acc[OB][KW];
  for (int o = 0; o < OB; ++o)
    for (int j = 0; j < KW; ++j) acc[o][j] = vload(a.acc + o * a.acc_ostride + j * kLanes);
  for (int64_t s = 0; s < a.images; ++s)
    for (int64_t r = 0; r < a.rows; ++r)
      for (int64_t v = 0; v < a.nv; ++v) {
        const float* gp = a.gy + s * a.gy_image + r * a.gy_cols + v * kLanes;
        const float* xp = a.x + s * a.x_image + r * a.cols + v * kLanes;
        vf gv[OB];
        for (int o = 0; o < OB; ++o) gv[o] = vload(gp + o * a.gy_plane);
        for (int j = 0; j < KW; ++j) {
          const vf xv = vload(xp + j * a.dw);
          for (int o = 0; o < OB; ++o) acc[o][j] += gv[o] * xv;
        }
      }
  for (int o = 0; o < OB; ++o)
    for (int j = 0; j < KW; ++j) vstore(a.acc + o * a.acc_ostride + j * kLanes, acc[o][j]);
}

using WgradFn = void (*)(const WgradArgs&);

int64_t wgrad_max_block(int64_t kw) { return kw == 3 ? 7 : kw == 5 ? 4 : 3; }

template <int KW>
WgradFn wgrad_kernel_kw(int64_t ob) {
  switch (ob) {
    case 1: return wgrad_tile<1, KW>;
    case 2: return wgrad_tile<2, KW>;
    case 3: return wgrad_tile<3, KW>;
    case 4: return wgrad_tile<4, KW>;
    case 5: return wgrad_tile<5, KW>;
    case 6: return wgrad_tile<6, KW>;
    default: return wgrad_tile<7, KW>;
  }
}

WgradFn wgrad_kernel(int64_t kw, int64_t ob) {
  return kw == 3 ? wgrad_kernel_kw<3>(ob) : kw == 5 ? wgrad_kernel_kw<5>(ob) : wgrad_kernel_kw<7>(ob);
}

}  // namespace

bool use_forward(const Conv2dGeometry& g) {
  return stride1_regular(g) && (fills_vectors(g.out_w) || (g.out_channels / g.groups) % kLanes == 0);
}

bool use_backward_input(const Conv2dGeometry& g) {
  // The transposed convolution also multiplies the zero border of the padded gradient; with
  // small images and large kernels that waste exceeds the GEMM path's col2im.
  // It is a convolution with in and out channels swapped, so use_forward's test uses in_channels.
  return stride1_regular(g) && (g.kernel_h - 1) * g.dilation_h >= g.pad_h &&
         (g.kernel_w - 1) * g.dilation_w >= g.pad_w &&
         (fills_vectors(g.in_w) || (g.in_channels / g.groups) % kLanes == 0) &&
         g.in_h * g.in_w <= 1.3 * g.out_h * g.out_w;
}

bool use_backward_weight(const Conv2dGeometry& g) {
  // With many (input channel, tap) pairs the GEMM's cache blocking wins; with few (e.g. a first
  // layer) its [O x P] x [P x Cg*kh*kw] product is too thin to run well.
  return stride1_regular(g) && (g.kernel_w == 3 || g.kernel_w == 5 || g.kernel_w == 7) && fills_vectors(g.out_w) &&
         (g.in_channels / g.groups) * g.kernel_h * g.kernel_w <= 64;
}

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, O = g.out_channels, Og = O / g.groups;
  const int64_t in_image = C * g.in_h * g.in_w, out_image = O * g.out_h * g.out_w;
  const PaddedLayout l = padded_layout(g);
  const bool chv = channel_vectors(g);
  const std::vector<Block> blocks = make_blocks(Og, chv || vectors_per_row(g.out_w) == 1 ? 16 : 12);
  float* wpack = thread_scratch<float>(ScratchSlot::PackedWeights, O * (C / g.groups) * g.kernel_h * g.kernel_w);
  pack_forward(w, g, blocks, wpack);
  auto rows = [&](const float* pad, float* out, int64_t oh0, int64_t oh1) {
    if (chv)
      forward_rows_chv(pad, l, wpack, bias, out, g, oh0, oh1);
    else
      forward_rows(pad, l, wpack, blocks, bias, out, g, oh0, oh1);
  };
  const double flops = 2.0 * O * (C / g.groups) * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  const int64_t chunks = batch_chunks(g.batch, flops);
  if (chunks > 1 || pool_threads() == 1 || g.batch * flops < kMinParallelFlops) {
    run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
      float* pad = thread_scratch<float>(ScratchSlot::Plane, C * l.plane);
      std::fill(pad, pad + C * l.plane, 0.0f);
      for (int64_t n = b0; n < b1; ++n) {
        pad_image(x + n * in_image, C, g, l, pad);
        rows(pad, y + n * out_image, 0, g.out_h);
      }
    });
    return;
  }
  // Few large images: split each image's rows over the threads.
  float* pad = thread_scratch<float>(ScratchSlot::Plane, C * l.plane);
  std::fill(pad, pad + C * l.plane, 0.0f);
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMinParallelFlops * g.out_h / flops));
  for (int64_t n = 0; n < g.batch; ++n) {
    pad_image(x + n * in_image, C, g, l, pad);
    parallel_range(g.out_h, grain, [&](int64_t r0, int64_t r1) {
      rows(pad, y + n * out_image, r0, r1);
    });
  }
}

void backward_input(const float* gy, const float* w, float* gx, const Conv2dGeometry& g) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t KH = g.kernel_h, KW = g.kernel_w, taps = KH * KW;
  // gx = conv(gy padded by (k-1)*d - p, weights flipped in space and transposed per group).
  Conv2dGeometry t = g;
  t.in_channels = g.out_channels;
  t.out_channels = g.in_channels;
  t.in_h = g.out_h;
  t.in_w = g.out_w;
  t.out_h = g.in_h;
  t.out_w = g.in_w;
  t.pad_h = (KH - 1) * g.dilation_h - g.pad_h;
  t.pad_w = (KW - 1) * g.dilation_w - g.pad_w;
  float* wt = thread_scratch<float>(ScratchSlot::FlippedWeights, g.in_channels * Og * taps);
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t i = 0; i < KH; ++i)
          for (int64_t j = 0; j < KW; ++j)
            wt[(((grp * Cg + c) * Og + o) * KH + (KH - 1 - i)) * KW + (KW - 1 - j)] =
                w[(((grp * Og + o) * Cg + c) * KH + i) * KW + j];
  if (winograd::applies(t))
    winograd::forward(gy, wt, nullptr, gx, t);
  else if (chv::use_forward(t))
    chv::forward(gy, wt, nullptr, gx, t);
  else
    forward(gy, wt, nullptr, gx, t);
}

void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g) {
  const int64_t G = g.groups, C = g.in_channels, O = g.out_channels, Cg = C / G, Og = O / G;
  const int64_t KH = g.kernel_h, KW = g.kernel_w, OH = g.out_h, OW = g.out_w;
  const int64_t wsize = O * Cg * KH * KW;
  const PaddedLayout l = padded_layout(g);
  const int64_t nv = vectors_per_row(OW), gy_cols = nv * kLanes, gy_plane = OH * gy_cols;
  const std::vector<Block> blocks = make_blocks(Og, wgrad_max_block(KW));
  const int64_t acc_ostride = Cg * KH * KW * kLanes;
  // Images per pass: their padded inputs and gradients stay in L2 while every block reads them.
  const int64_t image_floats = C * l.plane + O * gy_plane;
  const int64_t sub = std::clamp<int64_t>((256 << 10) / (4 * image_floats), 1, 16);
  const double flops = 2.0 * wsize * OH * OW;
  const int64_t chunks = batch_chunks(g.batch, flops);
  Tensor partial;
  if (chunks > 1) partial = Tensor::empty({chunks - 1, wsize}, DType::F32);
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    float* acc = thread_scratch<float>(ScratchSlot::Columns, wsize * kLanes);
    float* xpad = thread_scratch<float>(ScratchSlot::Plane, sub * C * l.plane);
    float* gpad = thread_scratch<float>(ScratchSlot::GradPlane, sub * O * gy_plane);
    std::fill(acc, acc + wsize * kLanes, 0.0f);
    std::fill(xpad, xpad + sub * C * l.plane, 0.0f);
    std::fill(gpad, gpad + sub * O * gy_plane, 0.0f);
    for (int64_t s0 = b0; s0 < b1; s0 += sub) {
      const int64_t count = std::min(sub, b1 - s0);
      for (int64_t s = 0; s < count; ++s) {
        pad_image(x + (s0 + s) * C * g.in_h * g.in_w, C, g, l, xpad + s * C * l.plane);
        const float* src = gy + (s0 + s) * O * OH * OW;
        float* dst = gpad + s * O * gy_plane;
        for (int64_t o = 0; o < O; ++o)
          for (int64_t r = 0; r < OH; ++r)
            std::memcpy(dst + o * gy_plane + r * gy_cols, src + (o * OH + r) * OW, OW * sizeof(float));
      }
      for (int64_t grp = 0; grp < G; ++grp)
        for (const Block& b : blocks) {
          const int64_t o = grp * Og + b.o0;
          const WgradFn fn = wgrad_kernel(KW, b.size);
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < KH; ++i) {
              WgradArgs a{gpad + o * gy_plane, gy_plane, gy_cols, O * gy_plane,
                          xpad + (grp * Cg + c) * l.plane + i * g.dilation_h * l.cols, l.cols, C * l.plane,
                          g.dilation_w, count, OH, nv,
                          acc + ((o * Cg + c) * KH + i) * KW * kLanes, acc_ostride};
              fn(a);
            }
        }
    }
    float* out = chunk == 0 ? gw : partial.data<float>() + (chunk - 1) * wsize;
    for (int64_t k = 0; k < wsize; ++k) out[k] = vsum<float>(vload(acc + k * kLanes));
  });
  for (int64_t c = 1; c < chunks; ++c) {
    const float* p = partial.data<float>() + (c - 1) * wsize;
    for (int64_t k = 0; k < wsize; ++k) gw[k] += p[k];
  }
}

}  // namespace qslim::cpu::direct
