#include "core/cpu/conv2d_chv.h"

// GCC 12 reports false "may be used uninitialized" warnings inside the AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/interleave.h"
#include "core/cpu/scratch.h"
#include "core/cpu/simd.h"
#include "core/cpu/transpose.h"

namespace qslim::cpu::chv {
namespace {

constexpr int64_t kL = Vec<float>::lanes;
using vf = Vec<float>::type;

// ---------------------------------------------------------------- padded input, by phase

struct Layout {
  int64_t phase_cols = 0, cols = 0, rows = 0, plane = 0;
  std::vector<int64_t> joff;    // per kernel column j: entry that tap j reads for output column 0
  std::vector<int64_t> colpos;  // per input column: its entry in a padded row
};

// Padded column c lives in phase c % s at index c / s, so output column ow's tap j reads entry
// joff[j] + ow: consecutive outputs read consecutive entries.
Layout make_layout(const Conv2dGeometry& g) {
  Layout l;
  const int64_t s = g.stride_w, padded_w = g.in_w + 2 * g.pad_w;
  l.phase_cols = (padded_w + s - 1) / s;
  l.cols = s * l.phase_cols;
  l.rows = g.in_h + 2 * g.pad_h;
  l.plane = l.rows * l.cols;
  for (int64_t j = 0; j < g.kernel_w; ++j) {
    const int64_t c = j * g.dilation_w;
    l.joff.push_back((c % s) * l.phase_cols + c / s);
  }
  for (int64_t w = 0; w < g.in_w; ++w) {
    const int64_t c = w + g.pad_w;
    l.colpos.push_back((c % s) * l.phase_cols + c / s);
  }
  return l;
}

// Writes the image's entries only; the caller zeroed `dst` (with this layout) once.
void pad_image(const float* x, int64_t channels, const Conv2dGeometry& g, const Layout& l, float* dst) {
  const int64_t H = g.in_h, W = g.in_w;
  if (g.stride_w == 2 && W % 2 == 0) {
    // Input column 2k lands in phase pad_w % 2 at entry k + pad_w / 2; column 2k + 1 in the
    // other phase at entry k + (pad_w + 1) / 2.
    const int64_t half = W / 2;
    float* even = thread_scratch<float>(ScratchSlot::Row, H * W);
    float* odd = even + H * half;
    for (int64_t c = 0; c < channels; ++c) {
      deinterleave(x + c * H * W, H * W, even, odd);
      float* pe = dst + c * l.plane + (g.pad_w % 2) * l.phase_cols + g.pad_w / 2;
      float* po = dst + c * l.plane + ((g.pad_w + 1) % 2) * l.phase_cols + (g.pad_w + 1) / 2;
      for (int64_t h = 0; h < H; ++h) {
        std::memcpy(pe + (h + g.pad_h) * l.cols, even + h * half, half * sizeof(float));
        std::memcpy(po + (h + g.pad_h) * l.cols, odd + h * half, half * sizeof(float));
      }
    }
    return;
  }
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t h = 0; h < g.in_h; ++h) {
      const float* src = x + (c * g.in_h + h) * g.in_w;
      float* row = dst + c * l.plane + (h + g.pad_h) * l.cols;
      if (g.stride_w == 1) {
        std::memcpy(row + g.pad_w, src, g.in_w * sizeof(float));
      } else {
        for (int64_t w = 0; w < g.in_w; ++w) row[l.colpos[w]] = src[w];
      }
    }
}

// ---------------------------------------------------------------- forward

struct FwdTile {
  const float* in;    // padded input: first channel of the group at the tile's first pixel
  int64_t cin, plane;
  const int64_t* toff;  // per kernel tap: offset of the entry it reads for the tile's first pixel
  int64_t ntaps;
  const float* w;     // packed [cin][tap][CB * 16]
  const float* bias;  // CB * 16 values, or null
  float* out;         // first channel of the block at the tile's first pixel
  int64_t out_plane;
  int64_t ostride;  // between the tile's output pixels (1, or the stride of a phase)
};


// Writes acc[cb][p] (16 channels of pixel p) to the NCHW rows out[(cb * 16 + o) * out_plane + p * ostride].
template <int PB, int CB>
inline void store_transposed(const vf (&acc)[CB][PB], float* out, int64_t out_plane, int64_t ostride) {
  static_assert(PB <= kL, "a tile has at most one vector of pixels");
#ifdef __AVX512F__
  if (ostride == 1) {
    const __mmask16 mask = static_cast<__mmask16>((1u << PB) - 1);
    for (int cb = 0; cb < CB; ++cb) {
      __m512 r[16];
      for (int p = 0; p < 16; ++p) r[p] = p < PB ? (__m512)acc[cb][p] : _mm512_setzero_ps();
      transpose16(r);
      for (int o = 0; o < 16; ++o) _mm512_mask_storeu_ps(out + (cb * kL + o) * out_plane, mask, r[o]);
    }
    return;
  }
#endif
  alignas(64) float tmp[CB][PB][kL];
  for (int cb = 0; cb < CB; ++cb)
    for (int p = 0; p < PB; ++p) vstore(tmp[cb][p], acc[cb][p]);
  for (int cb = 0; cb < CB; ++cb)
    for (int64_t o = 0; o < kL; ++o) {
      float* dst = out + (cb * kL + o) * out_plane;
      for (int p = 0; p < PB; ++p) dst[p * ostride] = tmp[cb][p][o];
    }
}

template <int PB, int CB>
void fwd_tile(const FwdTile& a) {
  vf acc[CB][PB];
  for (int cb = 0; cb < CB; ++cb) {
    const vf b = a.bias ? vload(a.bias + cb * kL) : vf{};
    for (int p = 0; p < PB; ++p) acc[cb][p] = b;
  }
  const float* wp = a.w;
  for (int64_t c = 0; c < a.cin; ++c) {
    const float* xc = a.in + c * a.plane;
    for (int64_t t = 0; t < a.ntaps; ++t, wp += CB * kL) {
      vf wv[CB];
      for (int cb = 0; cb < CB; ++cb) wv[cb] = vload(wp + cb * kL);
      const float* src = xc + a.toff[t];
      for (int p = 0; p < PB; ++p) {
        const vf xb = vsplat(src[p]);
        for (int cb = 0; cb < CB; ++cb) acc[cb][p] += wv[cb] * xb;
      }
    }
  }
  store_transposed<PB, CB>(acc, a.out, a.out_plane, a.ostride);
}

using FwdFn = void (*)(const FwdTile&);

constexpr int kMaxPixels1 = 14, kMaxPixels2 = 14;

template <int CB, int... P>
FwdFn pick_fwd(int64_t pb, std::integer_sequence<int, P...>) {
  static constexpr FwdFn table[] = {fwd_tile<P + 1, CB>...};
  return table[pb - 1];
}

FwdFn fwd_kernel(int64_t cb, int64_t pb) {
  if (cb == 1) return pick_fwd<1>(pb, std::make_integer_sequence<int, kMaxPixels1>{});
  return pick_fwd<2>(pb, std::make_integer_sequence<int, kMaxPixels2>{});
}

int64_t max_pixels(int64_t cb) { return cb == 1 ? kMaxPixels1 : kMaxPixels2; }

// Runs the tiles of one output row of n pixels: pixel tiles as even as the kernels allow.
template <typename MakeTile>
void row_tiles(int64_t n, int64_t cb, MakeTile make_tile) {
  const int64_t tiles = (n + max_pixels(cb) - 1) / max_pixels(cb), pb = (n + tiles - 1) / tiles;
  const FwdFn full = fwd_kernel(cb, pb), last = fwd_kernel(cb, n - (tiles - 1) * pb);
  for (int64_t t = 0; t < tiles; ++t) make_tile(t * pb, t + 1 == tiles ? last : full);
}

// Channel vectors per tile: two when the channels allow (four leave too few pixels per tile on
// the narrow rows where they would matter: measured slower).
int64_t channel_block(int64_t channels) { return channels / kL % 2 == 0 ? 2 : 1; }

// Packs weights [O, Cg, kh, kw] per block of `block` output channels as [Cg][kh][kw][block].
void pack_weights(const float* w, const Conv2dGeometry& g, int64_t block, float* out) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G, taps = g.kernel_h * g.kernel_w;
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t ob = 0; ob < Og; ob += block) {
      float* dst = out + (grp * Og + ob) * Cg * taps;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < taps; ++t)
          for (int64_t o = 0; o < block; ++o)
            dst[(c * taps + t) * block + o] = w[((grp * Og + ob + o) * Cg + c) * taps + t];
    }
}

void forward_rows(const float* pad, const Layout& l, const int64_t* toff, const float* wpack, const float* bias,
                  float* y, const Conv2dGeometry& g, int64_t cb, int64_t oh0, int64_t oh1) {
  const int64_t G = g.groups, Cg = g.in_channels / G, Og = g.out_channels / G;
  const int64_t taps = g.kernel_h * g.kernel_w, OW = g.out_w, out_plane = g.out_h * OW, block = cb * kL;
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t oh = oh0; oh < oh1; ++oh)
      row_tiles(OW, cb, [&](int64_t ow, FwdFn fn) {
        for (int64_t ob = 0; ob < Og; ob += block) {
          const int64_t o = grp * Og + ob;
          fn(FwdTile{pad + grp * Cg * l.plane + oh * g.stride_h * l.cols + ow, Cg, l.plane, toff, taps,
                     wpack + o * Cg * taps, bias ? bias + o : nullptr, y + o * out_plane + oh * OW + ow, out_plane, 1});
        }
      });
}

// Tap offsets within a padded plane: kernel row i steps dilation_h rows, column j reads joff[j].
std::vector<int64_t> tap_offsets(const Conv2dGeometry& g, const Layout& l) {
  std::vector<int64_t> toff;
  for (int64_t i = 0; i < g.kernel_h; ++i)
    for (int64_t j = 0; j < g.kernel_w; ++j) toff.push_back(i * g.dilation_h * l.cols + l.joff[j]);
  return toff;
}

// ---------------------------------------------------------------- input gradient, strided

// One dimension of a strided convolution seen from the input side: input positions a + s*u
// (a < s) receive gradient through taps i with (a + pad - i*d) divisible by s, from output
// position u + delta_i; consecutive such taps are `step` output positions apart.
struct PhaseTaps {
  std::vector<int64_t> taps;  // kernel indices
  int64_t delta0 = 0;         // output offset of the first tap
  int64_t step = 0;           // output offset change per further tap (negative)
  int64_t count = 0;          // input positions in this phase
};

int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

PhaseTaps phase_taps(int64_t a, int64_t s, int64_t pad, int64_t d, int64_t k, int64_t in) {
  PhaseTaps t;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t r = a + pad - i * d;
    if (((r % s) + s) % s != 0) continue;
    if (t.taps.empty()) t.delta0 = (r - (((r % s) + s) % s)) / s;
    t.taps.push_back(i);
  }
  t.step = -d / gcd(s, d);
  t.count = a < in ? (in - a + s - 1) / s : 0;
  return t;
}

// Zero padding of the output gradient so that every phase's reads stay inside.
struct GradPad {
  int64_t before = 0, after = 0;
};

GradPad grad_pad(const std::vector<PhaseTaps>& phases, int64_t out) {
  GradPad p;
  for (const PhaseTaps& t : phases) {
    if (t.taps.empty() || t.count == 0) continue;
    const int64_t lo = t.delta0 + t.step * static_cast<int64_t>(t.taps.size() - 1), hi = t.count - 1 + t.delta0;
    p.before = std::max(p.before, -lo);
    p.after = std::max(p.after, hi - (out - 1));
  }
  return p;
}

// ---------------------------------------------------------------- weight gradient

struct WgradTile {
  const float* x;  // padded input: first channel of the tile, row 0, entry 0
  int64_t plane, cols, dh, sh;
  const int64_t* joff;
  const float* gyt;  // output gradient as [pixel][O], at the block's first channel
  int64_t ldg;       // O
  int64_t out_h, out_w;
  float* acc;  // [CI * kh * kw][ld_acc] rows, at the block's first channel; accumulated into
  int64_t ld_acc;
};

// kUnit: stride 1 and dilation 1, so tap j reads entry ow + j of a row (constant displacements;
// otherwise each (row, j) pair needs its own pointer, and only CI == 1 fits the registers).
template <int CI, int CB, int K, bool kUnit>
void wgrad_tile(const WgradTile& a) {
  constexpr int T = CI * K * K;
  vf acc[T][CB];
  for (int t = 0; t < T; ++t)
    for (int cb = 0; cb < CB; ++cb) acc[t][cb] = vload(a.acc + t * a.ld_acc + cb * kL);
  int64_t jo[K];
  for (int j = 0; j < K; ++j) jo[j] = kUnit ? j : a.joff[j];
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    const float* rows[CI][K];
    for (int ci = 0; ci < CI; ++ci)
      for (int i = 0; i < K; ++i) rows[ci][i] = a.x + ci * a.plane + (oh * a.sh + i * a.dh) * a.cols;
    const float* gp = a.gyt + oh * a.out_w * a.ldg;
    for (int64_t ow = 0; ow < a.out_w; ++ow, gp += a.ldg) {
      vf gv[CB];
      for (int cb = 0; cb < CB; ++cb) gv[cb] = vload(gp + cb * kL);
      for (int ci = 0; ci < CI; ++ci)
        for (int i = 0; i < K; ++i)
          for (int j = 0; j < K; ++j) {
            const vf xb = vsplat(rows[ci][i][(kUnit ? j : jo[j]) + ow]);
            for (int cb = 0; cb < CB; ++cb) acc[(ci * K + i) * K + j][cb] += xb * gv[cb];
          }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int cb = 0; cb < CB; ++cb) vstore(a.acc + t * a.ld_acc + cb * kL, acc[t][cb]);
}

using WgradFn = void (*)(const WgradTile&);

struct WgradConfig {
  int64_t ci = 0, cb = 0;
  WgradFn fn = nullptr;
};

// 3x3: 18 accumulators (two input channels x one channel vector, or one x two); 5x5: 25.
WgradConfig wgrad_config(const Conv2dGeometry& g) {
  const int64_t Cg = g.in_channels / g.groups, nvec = g.out_channels / g.groups / kL;
  const bool unit = g.stride_w == 1 && g.dilation_w == 1;
  if (g.kernel_h == 3 && g.kernel_w == 3) {
    if (nvec % 2 == 0) return unit ? WgradConfig{1, 2, wgrad_tile<1, 2, 3, true>} : WgradConfig{1, 2, wgrad_tile<1, 2, 3, false>};
    if (unit && Cg % 2 == 0) return {2, 1, wgrad_tile<2, 1, 3, true>};
    return unit ? WgradConfig{1, 1, wgrad_tile<1, 1, 3, true>} : WgradConfig{1, 1, wgrad_tile<1, 1, 3, false>};
  }
  if (g.kernel_h == 5 && g.kernel_w == 5)
    return unit ? WgradConfig{1, 1, wgrad_tile<1, 1, 5, true>} : WgradConfig{1, 1, wgrad_tile<1, 1, 5, false>};
  return {};
}

// gyt [P][O] = gy [O][P] of one image, in blocks that keep both sides in cache.
void transpose_gradient(const float* gy, int64_t O, int64_t P, float* gyt) {
  constexpr int64_t B = 16;
  for (int64_t p0 = 0; p0 < P; p0 += B) {
    const int64_t p1 = std::min(P, p0 + B);
    for (int64_t o = 0; o < O; ++o) {
      const float* src = gy + o * P;
      for (int64_t p = p0; p < p1; ++p) gyt[p * O + o] = src[p];
    }
  }
}

}  // namespace

bool use_forward(const Conv2dGeometry& g) {
  // Few (input channel, tap) products per output cannot pay for the transposed stores; 1x1 convs
  // are plain products, better served by the GEMM path.
  return (g.out_channels / g.groups) % kL == 0 && g.kernel_h * g.kernel_w > 1 &&
         (g.in_channels / g.groups) * g.kernel_h * g.kernel_w >= 32;
}

bool use_backward_weight(const Conv2dGeometry& g) {
  return (g.out_channels / g.groups) % kL == 0 && wgrad_config(g).fn != nullptr &&
         (g.in_channels / g.groups) * g.kernel_h * g.kernel_w >= 32;
}

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  const int64_t C = g.in_channels, O = g.out_channels;
  const int64_t in_image = C * g.in_h * g.in_w, out_image = O * g.out_h * g.out_w;
  const Layout l = make_layout(g);
  const std::vector<int64_t> toff = tap_offsets(g, l);
  const int64_t cb = channel_block(g.out_channels / g.groups);
  float* wpack = thread_scratch<float>(ScratchSlot::PackedWeights, O * (C / g.groups) * g.kernel_h * g.kernel_w);
  pack_weights(w, g, cb * kL, wpack);
  const double flops = 2.0 * O * (C / g.groups) * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  const int64_t chunks = batch_chunks(g.batch, flops);
  if (chunks > 1 || pool_threads() == 1 || g.batch * flops < kMinParallelFlops) {
    run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
      float* pad = thread_scratch<float>(ScratchSlot::Plane, C * l.plane);
      std::fill(pad, pad + C * l.plane, 0.0f);
      for (int64_t n = b0; n < b1; ++n) {
        pad_image(x + n * in_image, C, g, l, pad);
        forward_rows(pad, l, toff.data(), wpack, bias, y + n * out_image, g, cb, 0, g.out_h);
      }
    });
    return;
  }
  // Few large images: split each image's rows over the threads.
  float* pad = thread_scratch<float>(ScratchSlot::Plane, C * l.plane);
  std::fill(pad, pad + C * l.plane, 0.0f);
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMinChunkFlops * g.out_h / flops));
  for (int64_t n = 0; n < g.batch; ++n) {
    pad_image(x + n * in_image, C, g, l, pad);
    parallel_range(g.out_h, grain,
                   [&](int64_t r0, int64_t r1) { forward_rows(pad, l, toff.data(), wpack, bias, y + n * out_image, g, cb, r0, r1); });
  }
}

bool use_backward_input(const Conv2dGeometry& g) {
  // 1x1 strided convs: three of four phases are empty and the transposed stores dominate.
  return (g.stride_h > 1 || g.stride_w > 1) && g.kernel_h * g.kernel_w > 1 && (g.in_channels / g.groups) % kL == 0 &&
         (g.out_channels / g.groups) * g.kernel_h * g.kernel_w >= 32;
}

// Phase by phase, the input gradient is a stride-1 correlation of the zero-padded output gradient
// with a sub-kernel (the taps of that phase), computed by the forward tiles with the roles of input
// and output channels swapped; phases no tap reaches get zeros.
void backward_input(const float* gy, const float* w, float* gx, const Conv2dGeometry& g) {
  const int64_t G = g.groups, C = g.in_channels, O = g.out_channels, Cg = C / G, Og = O / G;
  const int64_t KH = g.kernel_h, KW = g.kernel_w, H = g.in_h, W = g.in_w, HW = H * W, P = g.out_h * g.out_w;
  std::vector<PhaseTaps> ph, pw;
  for (int64_t a = 0; a < g.stride_h; ++a) ph.push_back(phase_taps(a, g.stride_h, g.pad_h, g.dilation_h, KH, H));
  for (int64_t b = 0; b < g.stride_w; ++b) pw.push_back(phase_taps(b, g.stride_w, g.pad_w, g.dilation_w, KW, W));
  const GradPad rp = grad_pad(ph, g.out_h), cp = grad_pad(pw, g.out_w);
  const int64_t cols = g.out_w + cp.before + cp.after, plane = (g.out_h + rp.before + rp.after) * cols;
  const int64_t cb = channel_block(Cg), block = cb * kL;
  // Per phase: packed weights [grp][c block][o][tap][block] and tap offsets in the padded gradient.
  struct Phase {
    int64_t a, b, ntaps;
    std::vector<int64_t> toff;
    std::vector<float> w;
  };
  std::vector<Phase> phases;
  for (int64_t a = 0; a < g.stride_h; ++a)
    for (int64_t b = 0; b < g.stride_w; ++b) {
      const PhaseTaps &ti = ph[a], &tj = pw[b];
      if (ti.count == 0 || tj.count == 0) continue;
      Phase f{a, b, static_cast<int64_t>(ti.taps.size() * tj.taps.size()), {}, {}};
      for (size_t k = 0; k < ti.taps.size(); ++k)
        for (size_t m = 0; m < tj.taps.size(); ++m)
          f.toff.push_back((ti.delta0 + ti.step * static_cast<int64_t>(k) + rp.before) * cols + tj.delta0 +
                           tj.step * static_cast<int64_t>(m) + cp.before);
      f.w.resize(G * Cg * Og * f.ntaps);
      for (int64_t grp = 0; grp < G; ++grp)
        for (int64_t c0 = 0; c0 < Cg; c0 += block) {
          float* dst = f.w.data() + (grp * Cg + c0) * Og * f.ntaps;
          for (int64_t o = 0; o < Og; ++o)
            for (size_t k = 0; k < ti.taps.size(); ++k)
              for (size_t m = 0; m < tj.taps.size(); ++m)
                for (int64_t cc = 0; cc < block; ++cc)
                  *dst++ = w[(((grp * Og + o) * Cg + c0 + cc) * KH + ti.taps[k]) * KW + tj.taps[m]];
        }
      phases.push_back(std::move(f));
    }
  const double flops = 2.0 * O * Cg * KH * KW * P;
  const int64_t chunks = batch_chunks(g.batch, flops);
  run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
    float* gpad = thread_scratch<float>(ScratchSlot::GradPlane, O * plane);
    std::fill(gpad, gpad + O * plane, 0.0f);
    for (int64_t n = b0; n < b1; ++n) {
      for (int64_t o = 0; o < O; ++o)
        for (int64_t r = 0; r < g.out_h; ++r)
          std::memcpy(gpad + o * plane + (r + rp.before) * cols + cp.before, gy + (n * O + o) * P + r * g.out_w,
                      g.out_w * sizeof(float));
      float* gxn = gx + n * C * HW;
      for (const Phase& f : phases) {
        const PhaseTaps &ti = ph[f.a], &tj = pw[f.b];
        if (f.ntaps == 0) {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t u = 0; u < ti.count; ++u)
              for (int64_t v = 0; v < tj.count; ++v) gxn[c * HW + (f.a + g.stride_h * u) * W + f.b + g.stride_w * v] = 0;
          continue;
        }
        for (int64_t grp = 0; grp < G; ++grp)
          for (int64_t u = 0; u < ti.count; ++u)
            row_tiles(tj.count, cb, [&](int64_t v, FwdFn fn) {
              for (int64_t c0 = 0; c0 < Cg; c0 += block)
                fn(FwdTile{gpad + grp * Og * plane + u * cols + v, Og, plane, f.toff.data(), f.ntaps,
                           f.w.data() + (grp * Cg + c0) * Og * f.ntaps, nullptr,
                           gxn + (grp * Cg + c0) * HW + (f.a + g.stride_h * u) * W + f.b + g.stride_w * v, HW,
                           g.stride_w});
            });
      }
    }
  });
}

void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g) {
  const int64_t G = g.groups, C = g.in_channels, O = g.out_channels, Cg = C / G, Og = O / G;
  const int64_t taps = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const int64_t wsize = O * Cg * taps;
  const Layout l = make_layout(g);
  const WgradConfig cfg = wgrad_config(g);
  const double flops = 2.0 * wsize * P;
  const int64_t chunks = batch_chunks(g.batch, flops);
  // acc [grp][c][tap][Og]: one per chunk, summed in chunk order.
  std::vector<float> partial(chunks > 1 ? (chunks - 1) * wsize : 0);
  float* acc0 = thread_scratch<float>(ScratchSlot::FlippedWeights, wsize);
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    float* acc = chunk == 0 ? acc0 : partial.data() + (chunk - 1) * wsize;
    float* xpad = thread_scratch<float>(ScratchSlot::Plane, C * l.plane);
    float* gyt = thread_scratch<float>(ScratchSlot::GradPlane, P * O);
    std::fill(acc, acc + wsize, 0.0f);
    std::fill(xpad, xpad + C * l.plane, 0.0f);
    for (int64_t n = b0; n < b1; ++n) {
      pad_image(x + n * C * HW, C, g, l, xpad);
      transpose_gradient(gy + n * O * P, O, P, gyt);
      for (int64_t grp = 0; grp < G; ++grp)
        for (int64_t ob = 0; ob < Og; ob += cfg.cb * kL)
          for (int64_t c = 0; c < Cg; c += cfg.ci) {
            WgradTile a{xpad + (grp * Cg + c) * l.plane, l.plane, l.cols, g.dilation_h, g.stride_h, l.joff.data(),
                        gyt + grp * Og + ob, O, g.out_h, g.out_w,
                        acc + ((grp * Cg + c) * taps) * Og + ob, Og};
            cfg.fn(a);
          }
    }
  });
  for (int64_t c = 1; c < chunks; ++c) {
    const float* p = partial.data() + (c - 1) * wsize;
    for (int64_t k = 0; k < wsize; ++k) acc0[k] += p[k];
  }
  // [grp][c][tap][o] -> [grp * Og + o][c][tap]
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const float* src = acc0 + ((grp * Cg + c) * taps + t) * Og;
        for (int64_t o = 0; o < Og; ++o) gw[((grp * Og + o) * Cg + c) * taps + t] = src[o];
      }
}

}  // namespace qslim::cpu::chv
