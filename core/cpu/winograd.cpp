#include "core/cpu/winograd.h"

// GCC 12 reports false "may be used uninitialized" warnings inside the AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/scratch.h"
#include "core/cpu/transpose.h"

namespace qslim::cpu::winograd {

#ifdef __AVX512F__
namespace {

constexpr int64_t kL = 16;

struct Geo {
  int64_t C, O, HW, OH, OW, P, TH, TW, T, Wp, plane;
  std::vector<int64_t> padpos;  // per input pixel: its position in the padded pixel-major image
};

// Tiles of 2x2 outputs; the padded image covers every tile's 4x4 patch (zeros past the input).
Geo make_geo(const Conv2dGeometry& g) {
  Geo e;
  e.C = g.in_channels;
  e.O = g.out_channels;
  e.HW = g.in_h * g.in_w;
  e.OH = g.out_h;
  e.OW = g.out_w;
  e.P = e.OH * e.OW;
  e.TH = (e.OH + 1) / 2;
  e.TW = (e.OW + 1) / 2;
  e.T = e.TH * e.TW;
  e.Wp = 2 * e.TW + 2;
  e.plane = (2 * e.TH + 2) * e.Wp;
  for (int64_t h = 0; h < g.in_h; ++h)
    for (int64_t w = 0; w < g.in_w; ++w) e.padpos.push_back((h + g.pad_h) * e.Wp + w + g.pad_w);
  return e;
}

inline __mmask16 lane_mask(int64_t n) { return n >= kL ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1); }

// U[xi][c][o] = (G g G^T)[xi] for each (o, c) of weights [O, C, 3, 3].
void transform_weights(const float* w, const Geo& e, float* u) {
  for (int64_t o = 0; o < e.O; ++o)
    for (int64_t c = 0; c < e.C; ++c) {
      const float* k = w + (o * e.C + c) * 9;
      float gg[4][3];  // G g
      for (int s = 0; s < 3; ++s) {
        gg[0][s] = k[s];
        gg[1][s] = 0.5f * (k[s] + k[3 + s] + k[6 + s]);
        gg[2][s] = 0.5f * (k[s] - k[3 + s] + k[6 + s]);
        gg[3][s] = k[6 + s];
      }
      for (int i = 0; i < 4; ++i) {
        const float r[4] = {gg[i][0], 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]), 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]),
                            gg[i][2]};
        for (int j = 0; j < 4; ++j) u[((i * 4 + j) * e.C + c) * e.O + o] = r[j];
      }
    }
}

// Pixel-major padded image xb[pos][C] from the planes x[C][HW] (the border is left as it is).
void to_pixel_major(const float* x, const Geo& e, float* xb) {
  for (int64_t cb = 0; cb < e.C; cb += kL)
    for (int64_t q0 = 0; q0 < e.HW; q0 += kL) {
      const int64_t m = std::min(kL, e.HW - q0);
      const __mmask16 mk = lane_mask(m);
      __m512 r[16];
      for (int64_t k = 0; k < kL; ++k) r[k] = _mm512_maskz_loadu_ps(mk, x + (cb + k) * e.HW + q0);
      transpose16(r);
      for (int64_t t = 0; t < m; ++t) _mm512_storeu_ps(xb + e.padpos[q0 + t] * e.C + cb, r[t]);
    }
}

// V[xi][row0 + t][C] = (B^T d B)[xi] for every tile's 4x4 patch d, 16 channels per vector; V has
// `rows` tile rows per xi (several images' tiles side by side).
void transform_input(const float* xb, const Geo& e, float* v, int64_t rows, int64_t row0) {
  const int64_t C = e.C, row = e.Wp * C, xi_stride = rows * C;
  for (int64_t th = 0; th < e.TH; ++th)
    for (int64_t tw = 0; tw < e.TW; ++tw) {
      const int64_t t = row0 + th * e.TW + tw;
      const float* base = xb + (2 * th * e.Wp + 2 * tw) * C;
      for (int64_t c = 0; c < C; c += kL) {
        __m512 d[4][4];
        for (int r = 0; r < 4; ++r)
          for (int s = 0; s < 4; ++s) d[r][s] = _mm512_loadu_ps(base + r * row + s * C + c);
        __m512 b[4][4];  // B^T d (combining rows)
        for (int s = 0; s < 4; ++s) {
          b[0][s] = _mm512_sub_ps(d[0][s], d[2][s]);
          b[1][s] = _mm512_add_ps(d[1][s], d[2][s]);
          b[2][s] = _mm512_sub_ps(d[2][s], d[1][s]);
          b[3][s] = _mm512_sub_ps(d[1][s], d[3][s]);
        }
        float* dst = v + t * C + c;
        for (int i = 0; i < 4; ++i) {
          _mm512_storeu_ps(dst + (i * 4 + 0) * xi_stride, _mm512_sub_ps(b[i][0], b[i][2]));
          _mm512_storeu_ps(dst + (i * 4 + 1) * xi_stride, _mm512_add_ps(b[i][1], b[i][2]));
          _mm512_storeu_ps(dst + (i * 4 + 2) * xi_stride, _mm512_sub_ps(b[i][2], b[i][1]));
          _mm512_storeu_ps(dst + (i * 4 + 3) * xi_stride, _mm512_sub_ps(b[i][1], b[i][3]));
        }
      }
    }
}

// m[p][O] (CB vectors from the block's first channel) = sum over c of v[p][c] * u[c][O], for PB tiles.
template <int PB, int CB, int C>
void gemm_tile(const float* v, const float* u, int64_t O, float* m) {
  __m512 acc[PB][CB];
  for (int p = 0; p < PB; ++p)
    for (int cb = 0; cb < CB; ++cb) acc[p][cb] = _mm512_setzero_ps();
  for (int c = 0; c < C; ++c) {
    __m512 uv[CB];
    for (int cb = 0; cb < CB; ++cb) uv[cb] = _mm512_loadu_ps(u + c * O + cb * kL);
    for (int p = 0; p < PB; ++p) {
      const __m512 xb = _mm512_set1_ps(v[p * C + c]);
      for (int cb = 0; cb < CB; ++cb) acc[p][cb] = _mm512_fmadd_ps(uv[cb], xb, acc[p][cb]);
    }
  }
  for (int p = 0; p < PB; ++p)
    for (int cb = 0; cb < CB; ++cb) _mm512_storeu_ps(m + p * O + cb * kL, acc[p][cb]);
}

using GemmFn = void (*)(const float*, const float*, int64_t, float*);
constexpr int kMaxTiles1 = 16, kMaxTiles2 = 12;

template <int CB, int C, int... P>
GemmFn pick_gemm(int64_t pb, std::integer_sequence<int, P...>) {
  static constexpr GemmFn table[] = {gemm_tile<P + 1, CB, C>...};
  return table[pb - 1];
}

template <int C>
GemmFn gemm_kernel_c(int64_t cb, int64_t pb) {
  if (cb == 1) return pick_gemm<1, C>(pb, std::make_integer_sequence<int, kMaxTiles1>{});
  return pick_gemm<2, C>(pb, std::make_integer_sequence<int, kMaxTiles2>{});
}

GemmFn gemm_kernel(int64_t c, int64_t cb, int64_t pb) {
  if (c == 16) return gemm_kernel_c<16>(cb, pb);
  if (c == 32) return gemm_kernel_c<32>(cb, pb);
  return gemm_kernel_c<64>(cb, pb);
}

bool supported_channels(int64_t c) { return c == 16 || c == 32 || c == 64; }

// M[xi][t][O] = V[xi][t][C] x U[xi][C][O] for the 16 xi.
void multiply(const float* v, const float* u, const Geo& e, float* m) {
  const int64_t cb = e.O / kL % 2 == 0 ? 2 : 1, block = cb * kL, max_pb = cb == 1 ? kMaxTiles1 : kMaxTiles2;
  const int64_t groups = (e.T + max_pb - 1) / max_pb, pb = (e.T + groups - 1) / groups;
  const GemmFn full = gemm_kernel(e.C, cb, pb), last = gemm_kernel(e.C, cb, e.T - (groups - 1) * pb);
  for (int64_t xi = 0; xi < 16; ++xi) {
    const float* vx = v + xi * e.T * e.C;
    const float* ux = u + xi * e.C * e.O;
    float* mx = m + xi * e.T * e.O;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t t0 = gi * pb;
      const GemmFn fn = gi + 1 == groups ? last : full;
      for (int64_t ob = 0; ob < e.O; ob += block) fn(vx + t0 * e.C, ux + ob, e.O, mx + t0 * e.O + ob);
    }
  }
}

// yb[pixel][O] = A^T M A (+ bias) for every tile, keeping the outputs inside the image.
void transform_output(const float* m, const float* bias, const Geo& e, float* yb) {
  const int64_t O = e.O, xi_stride = e.T * O;
  for (int64_t th = 0; th < e.TH; ++th)
    for (int64_t tw = 0; tw < e.TW; ++tw) {
      const int64_t t = th * e.TW + tw, oh = 2 * th, ow = 2 * tw;
      const bool down = oh + 1 < e.OH, right = ow + 1 < e.OW;
      for (int64_t o = 0; o < O; o += kL) {
        const float* src = m + t * O + o;
        __m512 r[2][4];  // A^T M (combining rows)
        for (int j = 0; j < 4; ++j) {
          const __m512 m0 = _mm512_loadu_ps(src + (0 * 4 + j) * xi_stride);
          const __m512 m1 = _mm512_loadu_ps(src + (1 * 4 + j) * xi_stride);
          const __m512 m2 = _mm512_loadu_ps(src + (2 * 4 + j) * xi_stride);
          const __m512 m3 = _mm512_loadu_ps(src + (3 * 4 + j) * xi_stride);
          r[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
          r[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
        for (int i = 0; i < 2; ++i) {
          if (i == 1 && !down) break;
          float* dst = yb + ((oh + i) * e.OW + ow) * O + o;
          _mm512_storeu_ps(dst, _mm512_add_ps(b, _mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2])));
          if (right) _mm512_storeu_ps(dst + O, _mm512_add_ps(b, _mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3])));
        }
      }
    }
}

// Planes y[O][P] from the pixel-major yb[P][O].
void from_pixel_major(const float* yb, const Geo& e, float* y) {
  for (int64_t ob = 0; ob < e.O; ob += kL)
    for (int64_t q0 = 0; q0 < e.P; q0 += kL) {
      const int64_t m = std::min(kL, e.P - q0);
      const __mmask16 mk = lane_mask(m);
      __m512 r[16];
      for (int64_t t = 0; t < kL; ++t) r[t] = t < m ? _mm512_loadu_ps(yb + (q0 + t) * e.O + ob) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t k = 0; k < kL; ++k) _mm512_mask_storeu_ps(y + (ob + k) * e.P + q0, mk, r[k]);
    }
}

// ---------------------------------------------------------------- weight gradient
// With U = G g G^T linear in the weights, dL/dg = G^T (dL/dU) G and
// dL/dU[xi][c][o] = sum over tiles of V[xi][t][c] * (A dY_t A^T)[xi][o], dY_t the tile's 2x2 output gradient.

// Pixel-major gradient gyb[P][O] from planes gy[O][P].
void gradient_to_pixel_major(const float* gy, const Geo& e, float* gyb) {
  for (int64_t ob = 0; ob < e.O; ob += kL)
    for (int64_t q0 = 0; q0 < e.P; q0 += kL) {
      const int64_t m = std::min(kL, e.P - q0);
      const __mmask16 mk = lane_mask(m);
      __m512 r[16];
      for (int64_t k = 0; k < kL; ++k) r[k] = _mm512_maskz_loadu_ps(mk, gy + (ob + k) * e.P + q0);
      transpose16(r);
      for (int64_t t = 0; t < m; ++t) _mm512_storeu_ps(gyb + (q0 + t) * e.O + ob, r[t]);
    }
}

// Gm[xi][row0 + t][O] = (A dY_t A^T)[xi] (with `rows` tile rows per xi), zeros for the outputs of
// a tile that fall outside the image.
void transform_gradient(const float* gyb, const Geo& e, float* gm, int64_t rows, int64_t row0) {
  const int64_t O = e.O, xi_stride = rows * O;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t th = 0; th < e.TH; ++th)
    for (int64_t tw = 0; tw < e.TW; ++tw) {
      const int64_t t = row0 + th * e.TW + tw, oh = 2 * th, ow = 2 * tw;
      const bool down = oh + 1 < e.OH, right = ow + 1 < e.OW;
      for (int64_t o = 0; o < O; o += kL) {
        const float* src = gyb + (oh * e.OW + ow) * O + o;
        const __m512 d00 = _mm512_loadu_ps(src), d01 = right ? _mm512_loadu_ps(src + O) : zero;
        const __m512 d10 = down ? _mm512_loadu_ps(src + e.OW * O) : zero;
        const __m512 d11 = down && right ? _mm512_loadu_ps(src + (e.OW + 1) * O) : zero;
        // A dY (rows), then (A dY) A^T (columns); A = [[1,0],[1,1],[1,-1],[0,-1]].
        const __m512 r[4][2] = {{d00, d01},
                                {_mm512_add_ps(d00, d10), _mm512_add_ps(d01, d11)},
                                {_mm512_sub_ps(d00, d10), _mm512_sub_ps(d01, d11)},
                                {_mm512_sub_ps(zero, d10), _mm512_sub_ps(zero, d11)}};
        float* dst = gm + t * O + o;
        for (int i = 0; i < 4; ++i) {
          _mm512_storeu_ps(dst + (i * 4 + 0) * xi_stride, r[i][0]);
          _mm512_storeu_ps(dst + (i * 4 + 1) * xi_stride, _mm512_add_ps(r[i][0], r[i][1]));
          _mm512_storeu_ps(dst + (i * 4 + 2) * xi_stride, _mm512_sub_ps(r[i][0], r[i][1]));
          _mm512_storeu_ps(dst + (i * 4 + 3) * xi_stride, _mm512_sub_ps(zero, r[i][1]));
        }
      }
    }
}

// du[c][O] (CC rows from the block's first channel, CB vectors) += sum over t < T of
// v[t][c] * gm[t][O].
template <int CC, int CB>
void accumulate_tile(const float* v, int64_t C, const float* gm, int64_t O, int64_t T, float* du) {
  __m512 acc[CC][CB];
  for (int cc = 0; cc < CC; ++cc)
    for (int cb = 0; cb < CB; ++cb) acc[cc][cb] = _mm512_loadu_ps(du + cc * O + cb * kL);
  for (int64_t t = 0; t < T; ++t) {
    __m512 gv[CB];
    for (int cb = 0; cb < CB; ++cb) gv[cb] = _mm512_loadu_ps(gm + t * O + cb * kL);
    const float* vt = v + t * C;
    for (int cc = 0; cc < CC; ++cc) {
      const __m512 xb = _mm512_set1_ps(vt[cc]);
      for (int cb = 0; cb < CB; ++cb) acc[cc][cb] = _mm512_fmadd_ps(xb, gv[cb], acc[cc][cb]);
    }
  }
  for (int cc = 0; cc < CC; ++cc)
    for (int cb = 0; cb < CB; ++cb) _mm512_storeu_ps(du + cc * O + cb * kL, acc[cc][cb]);
}

// dU[xi][C][O] += V[xi]^T Gm[xi] over `rows` tiles.
void accumulate(const float* v, const float* gm, const Geo& e, int64_t rows, float* du) {
  const int64_t cb = e.O / kL % 2 == 0 ? 2 : 1, cc = cb == 1 ? 16 : 8;
  for (int64_t xi = 0; xi < 16; ++xi) {
    const float* vx = v + xi * rows * e.C;
    const float* gx = gm + xi * rows * e.O;
    float* dx = du + xi * e.C * e.O;
    for (int64_t c = 0; c < e.C; c += cc)
      for (int64_t o = 0; o < e.O; o += cb * kL) {
        if (cb == 1)
          accumulate_tile<16, 1>(vx + c, e.C, gx + o, e.O, rows, dx + c * e.O + o);
        else
          accumulate_tile<8, 2>(vx + c, e.C, gx + o, e.O, rows, dx + c * e.O + o);
      }
  }
}

// Images whose tiles are accumulated together: at least 64 tiles per pass over the registers.
int64_t images_per_pass(const Geo& e) { return std::max<int64_t>(1, (64 + e.T - 1) / e.T); }

// gw[o][c][3][3] = G^T dU[.][c][o] G.
void weights_from_transformed(const float* du, const Geo& e, float* gw) {
  for (int64_t o = 0; o < e.O; ++o)
    for (int64_t c = 0; c < e.C; ++c) {
      float d[4][4];
      for (int xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = du[(xi * e.C + c) * e.O + o];
      float r[3][4];  // G^T dU
      for (int j = 0; j < 4; ++j) {
        r[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
        r[1][j] = 0.5f * (d[1][j] - d[2][j]);
        r[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
      }
      float* k = gw + (o * e.C + c) * 9;
      for (int i = 0; i < 3; ++i) {
        k[i * 3 + 0] = r[i][0] + 0.5f * (r[i][1] + r[i][2]);
        k[i * 3 + 1] = 0.5f * (r[i][1] - r[i][2]);
        k[i * 3 + 2] = 0.5f * (r[i][1] + r[i][2]) + r[i][3];
      }
    }
}

}  // namespace

bool applies(const Conv2dGeometry& g) {
  // Images are the unit of parallel work: a batch too small to give each thread a few runs on the
  // channel-vector kernels, which split rows.
  const bool enough_images = pool_threads() == 1 || g.batch >= 2 * pool_threads();
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 &&
         g.dilation_w == 1 && g.groups == 1 && supported_channels(g.in_channels) && g.out_channels % kL == 0 &&
         enough_images;
}

void forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g) {
  const Geo e = make_geo(g);
  float* u = thread_scratch<float>(ScratchSlot::PackedWeights, 16 * e.C * e.O);
  transform_weights(w, e, u);
  const int64_t chunks = batch_chunks(g.batch, 2.0 * e.O * e.C * 9 * e.P);
  run_chunks(chunks, g.batch, [&](int64_t, int64_t b0, int64_t b1) {
    float* xb = thread_scratch<float>(ScratchSlot::Plane, e.plane * e.C);
    float* v = thread_scratch<float>(ScratchSlot::Columns, 16 * e.T * e.C);
    float* m = thread_scratch<float>(ScratchSlot::GradColumns, 16 * e.T * e.O);
    float* yb = thread_scratch<float>(ScratchSlot::Row, e.P * e.O);
    std::fill(xb, xb + e.plane * e.C, 0.0f);  // the border stays zero; the interior is rewritten
    for (int64_t n = b0; n < b1; ++n) {
      to_pixel_major(x + n * e.C * e.HW, e, xb);
      transform_input(xb, e, v, e.T, 0);
      multiply(v, u, e, m);
      transform_output(m, bias, e, yb);
      from_pixel_major(yb, e, y + n * e.O * e.P);
    }
  });
}

void backward_weight(const float* gy, const float* x, float* gw, const Conv2dGeometry& g) {
  const Geo e = make_geo(g);
  const int64_t usize = 16 * e.C * e.O;
  const int64_t chunks = batch_chunks(g.batch, 2.0 * e.O * e.C * 9 * e.P);
  // dU per chunk, added in chunk order.
  std::vector<float> du_all(chunks * usize, 0.0f);
  const int64_t group = images_per_pass(e);
  run_chunks(chunks, g.batch, [&](int64_t chunk, int64_t b0, int64_t b1) {
    float* xb = thread_scratch<float>(ScratchSlot::Plane, e.plane * e.C);
    float* v = thread_scratch<float>(ScratchSlot::Columns, 16 * group * e.T * e.C);
    float* gm = thread_scratch<float>(ScratchSlot::GradColumns, 16 * group * e.T * e.O);
    float* gyb = thread_scratch<float>(ScratchSlot::Row, e.P * e.O);
    std::fill(xb, xb + e.plane * e.C, 0.0f);
    float* du = du_all.data() + chunk * usize;
    for (int64_t n0 = b0; n0 < b1; n0 += group) {
      const int64_t count = std::min(group, b1 - n0), rows = count * e.T;
      for (int64_t i = 0; i < count; ++i) {
        to_pixel_major(x + (n0 + i) * e.C * e.HW, e, xb);
        transform_input(xb, e, v, rows, i * e.T);
        gradient_to_pixel_major(gy + (n0 + i) * e.O * e.P, e, gyb);
        transform_gradient(gyb, e, gm, rows, i * e.T);
      }
      accumulate(v, gm, e, rows, du);
    }
  });
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t k = 0; k < usize; ++k) du_all[k] += du_all[c * usize + k];
  weights_from_transformed(du_all.data(), e, gw);
}

#else  // no AVX-512: the channel-vector and direct kernels run instead

bool applies(const Conv2dGeometry&) { return false; }
void forward(const float*, const float*, const float*, float*, const Conv2dGeometry&) {
  QSLIM_FAIL("winograd::forward: built without AVX-512");
}
void backward_weight(const float*, const float*, float*, const Conv2dGeometry&) {
  QSLIM_FAIL("winograd::backward_weight: built without AVX-512");
}

#endif

}  // namespace qslim::cpu::winograd
