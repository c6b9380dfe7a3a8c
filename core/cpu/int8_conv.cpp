// INT8 groups == 1 convolution, NHWC (int8_conv.h): patches of a block of output pixels are built
// in per-thread scratch ([pixel][kh][kw][c] rows, the packed weights' K order) and multiplied by
// the packed weights with the INT8 GEMM, which requantizes in its output pass. Padding bytes hold
// the input zero point, so they contribute (z - z) * w = 0 as in the float conv.
// Threading: blocks of output pixels on the kernels' pool with single-threaded GEMMs (the GEMM
// runs inline inside a task), or, for 1x1 stride-1 unpadded convs, one GEMM on x itself that
// threads on its own.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu/int8_checks.h"
#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_requant.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kBlockBytes = int64_t{96} << 10;  // patch rows per block: ~L2-resident
constexpr int64_t kParallelMacs = int64_t{1} << 22;

// memcpy / memset for the short runs of a patch row, without a library call per run. They store
// whole 64-byte vectors (masked stores are slow on some CPUs): up to 63 bytes past the run, which
// the next run overwrites (runs are written in address order) or the buffer's slack absorbs.
// Loads are masked, so nothing is read past the run.
constexpr int64_t kSlack = 64;

inline void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
#ifdef QSLIM_INT8_AVX512
  for (; n > 64; n -= 64, dst += 64, src += 64) _mm512_storeu_si512(dst, _mm512_loadu_si512(src));
  _mm512_storeu_si512(dst, _mm512_maskz_loadu_epi8(int8_requant::tail_mask64(n), src));
#else
  std::memcpy(dst, src, static_cast<size_t>(n));
#endif
}

inline void fill_bytes(uint8_t* dst, uint8_t v, int64_t n) {
#ifdef QSLIM_INT8_AVX512
  const __m512i s = _mm512_set1_epi8(static_cast<char>(v));
  for (; n > 0; n -= 64, dst += 64) _mm512_storeu_si512(dst, s);
#else
  std::memset(dst, v, static_cast<size_t>(n));
#endif
}

// Builds the patch rows (K = kh * kw * c bytes each) of consecutive output pixels. The geometry
// is copied into locals: stores through uint8_t* may alias anything, so members read through a
// reference would be reloaded after every store.
struct PatchBuilder {
  const uint8_t* x;
  int64_t H, W, C, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, K;
  uint8_t z;

  // Pixels m0 .. m1 - 1 (flattened n * OH * OW + oh * OW + ow) into dst.
  void build(int64_t m0, int64_t m1, uint8_t* dst) const {
#ifdef QSLIM_INT8_AVX512
    const int64_t nv = (KW * C + 63) / 64;
    if (KH == 3 && nv == 1) return build_impl<3, 1>(m0, m1, dst);
    if (KH == 3 && nv == 2) return build_impl<3, 2>(m0, m1, dst);
    if (KH == 3 && nv == 3) return build_impl<3, 3>(m0, m1, dst);
#endif
    build_impl<0, 0>(m0, m1, dst);
  }

  // KH_ and NV (64-byte vectors per kernel-row run) fixed at compile time for the common shapes,
  // so that interior pixels (every tap inside the image) are a few unrolled vector copies.
  template <int KH_, int NV>
  void build_impl(int64_t m0, int64_t m1, uint8_t* dst) const {
    const int64_t run = KW * C;
    int64_t n = m0 / (OH * OW), oh = m0 % (OH * OW) / OW, ow = m0 % OW;
    const uint8_t* rows[64];  // per kernel row: the input row, or null in the padding
    bool all_rows = true;
    auto set_rows = [&] {
      all_rows = true;
      for (int64_t i = 0; i < KH; ++i) {
        const int64_t ih = oh * SH - PH + i * DH;
        rows[i] = (ih < 0 || ih >= H) ? nullptr : x + (n * H + ih) * W * C;
        all_rows = all_rows && rows[i] != nullptr;
      }
    };
    set_rows();
#ifdef QSLIM_INT8_AVX512
    const __mmask64 last = int8_requant::tail_mask64(run - (NV - 1) * 64);
#endif
    for (int64_t m = m0; m < m1; ++m, dst += K) {
      const int64_t iw0 = ow * SW - PW;
      const bool inside = DW == 1 && iw0 >= 0 && iw0 + KW <= W;
      bool done = false;
#ifdef QSLIM_INT8_AVX512
      if constexpr (KH_ > 0) {
        if (inside && all_rows) {
          for (int i = 0; i < KH_; ++i) {
            const uint8_t* src = rows[i] + iw0 * C;
            uint8_t* d = dst + i * run;
            for (int v = 0; v + 1 < NV; ++v) _mm512_storeu_si512(d + 64 * v, _mm512_loadu_si512(src + 64 * v));
            _mm512_storeu_si512(d + 64 * (NV - 1), _mm512_maskz_loadu_epi8(last, src + 64 * (NV - 1)));
          }
          done = true;
        }
      }
#endif
      if (!done) {
        uint8_t* d = dst;
        for (int64_t i = 0; i < KH; ++i, d += run) {
          if (rows[i] == nullptr) {
            fill_bytes(d, z, run);
          } else if (inside) {
            copy_bytes(d, rows[i] + iw0 * C, run);
          } else {
            for (int64_t j = 0; j < KW; ++j) {
              const int64_t iw = iw0 + j * DW;
              if (iw >= 0 && iw < W) {
                copy_bytes(d + j * C, rows[i] + iw * C, C);
              } else {
                fill_bytes(d + j * C, z, C);
              }
            }
          }
        }
      }
      if (++ow == OW) {
        ow = 0;
        if (++oh == OH) oh = 0, ++n;
        if (m + 1 < m1) set_rows();
      }
    }
  }
};

template <typename OutT>
void gemm_out(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out, OutT* y,
              int64_t ldc) {
  if constexpr (std::is_same_v<OutT, uint8_t>) {
    gemm_u8s8_u8(m, a, lda, w, out, y, ldc);
  } else {
    gemm_u8s8_f32(m, a, lda, w, out, y, ldc);
  }
}

template <typename OutT>
void conv_any(const char* op, const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point,
              const PackedInt8Weights& w, const Int8Output& out, OutT* y) {
  int8_checks::geometry(op, g);
  if constexpr (std::is_same_v<OutT, uint8_t>) int8_checks::u8_output(op, out);
  QSLIM_CHECK(in_zero_point >= 0 && in_zero_point <= 255, op, ": input zero point ", in_zero_point,
              " is outside the uint8 range [0, 255]");
  QSLIM_CHECK(w.n == g.out_c && w.k == g.gemm_k(), op, ": packed weights are ", w.n, " x ", w.k, " but input [",
              g.batch, ", ", g.in_h, ", ", g.in_w, ", ", g.in_c, "] with kernel ", g.kernel_h, "x", g.kernel_w,
              " -> ", g.out_c, " channels needs ", g.out_c, " x ", g.gemm_k());
  QSLIM_CHECK(w.a_zero_point == in_zero_point, op, ": weights were packed for input zero point ", w.a_zero_point,
              " but the input's is ", in_zero_point);
  const int64_t OH = g.out_h(), OW = g.out_w(), K = g.gemm_k(), N = g.out_c;
  const int64_t M = g.batch * OH * OW;
  if (M == 0) return;
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
                         g.pad_w == 0;
  if (pointwise) {
    gemm_out(M, x, K, w, out, y, N);
    return;
  }
  const int64_t rows = std::clamp<int64_t>(kBlockBytes / K, 16, 512) / 16 * 16;
  const int64_t nblocks = (M + rows - 1) / rows;
  QSLIM_CHECK(g.kernel_h <= 64, op, ": kernel height ", g.kernel_h, " is larger than the supported 64");
  const PatchBuilder pb{x,          g.in_h,       g.in_w,       g.in_c,  g.kernel_h, g.kernel_w, g.stride_h,
                        g.stride_w, g.pad_h,      g.pad_w,      g.dilation_h, g.dilation_w, OH, OW, K,
                        static_cast<uint8_t>(in_zero_point)};
  auto blocks = [&](int64_t b0, int64_t b1) {
    thread_local std::vector<uint8_t> patches;
    if (static_cast<int64_t>(patches.size()) < rows * K + kSlack) patches.resize(static_cast<size_t>(rows * K + kSlack));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = b * rows, m1 = std::min(M, m0 + rows);
      pb.build(m0, m1, patches.data());
      gemm_out(m1 - m0, patches.data(), K, w, out, y + m0 * N, N);
    }
  };
  if (M * K * N < kParallelMacs || nblocks < 2) {
    blocks(0, nblocks);
  } else {
    parallel_range(nblocks, 1, blocks);
  }
}

}  // namespace

PackedInt8Weights pack_int8_conv_weights(const int8_t* w_oihw, const Int8ConvGeometry& g, const int32_t* bias_q,
                                         int32_t in_zero_point, const float* multiplier, int64_t multiplier_count,
                                         Int8Isa isa) {
  const char* op = "pack_int8_conv_weights";
  QSLIM_CHECK(g.in_c > 0 && g.out_c > 0 && g.kernel_h > 0 && g.kernel_w > 0, op, ": weight [", g.out_c, ", ",
              g.in_c, ", ", g.kernel_h, ", ", g.kernel_w, "]: expected positive sizes");
  QSLIM_CHECK(w_oihw != nullptr, op, ": weights must be given");
  const int64_t C = g.in_c, KH = g.kernel_h, KW = g.kernel_w, K = g.gemm_k();
  std::vector<int8_t> rows(static_cast<size_t>(g.out_c * K));
  for (int64_t o = 0; o < g.out_c; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < KH; ++i)
        for (int64_t j = 0; j < KW; ++j) rows[o * K + (i * KW + j) * C + c] = w_oihw[((o * C + c) * KH + i) * KW + j];
  return pack_int8_weights(rows.data(), g.out_c, K, K, bias_q, in_zero_point, multiplier, multiplier_count, isa);
}

void int8_conv2d_u8(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                    const Int8Output& out, uint8_t* y) {
  conv_any("int8_conv2d_u8", x, g, in_zero_point, w, out, y);
}

void int8_conv2d_f32(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                     const Int8Output& out, float* y) {
  conv_any("int8_conv2d_f32", x, g, in_zero_point, w, out, y);
}

}  // namespace qslim::cpu
