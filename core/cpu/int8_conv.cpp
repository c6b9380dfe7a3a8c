// INT8 groups == 1 convolution, NHWC (int8_conv.h). Paths, by ISA and shape:
//  - 1x1 stride-1 unpadded: one GEMM on x itself (it already is the patch matrix).
//  - AVX512-VNNI with dilation 1 along the width: no patch copies. An image's input rows, padded
//    with the input zero point into per-thread scratch when the conv pads, are the GEMM's A
//    through an IndirectA view (int8_gemm_kernels.h) with one K segment per kernel row (its
//    kernel_w * in_c bytes are contiguous in NHWC; runs of other lengths than multiples of 4 are
//    packed padded with zero weights). Two shape-specific kernels read the same view: 3-tap rows
//    over 16 -> 16 channels (ResNet's first stage) and the pixel-lane kernel for <= 8 output
//    channels (LeNet's first conv), see int8_gemm_vnni.cpp and int8_gemm_pixel_lanes.cpp.
//  - otherwise: patches of a block of output pixels are built in per-thread scratch ([pixel][kh]
//    [kw][c] rows, the packed weights' K order) and multiplied by the GEMM.
// Padding bytes hold the input zero point, so they contribute (z - z) * w = 0 as in the float
// conv. Threading: tasks of whole images (or blocks of output rows when the batch is smaller than
// a few per thread) with single-threaded kernels inside, or the pointwise GEMM's own threading.
#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu/int8_checks.h"
#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_gemm_kernels.h"
#include "core/cpu/int8_requant.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kBlockBytes = int64_t{96} << 10;  // patch rows per block: ~L2-resident
constexpr int64_t kParallelMacs = int64_t{1} << 22;
constexpr int64_t kMaxKernelH = 64;

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
    const uint8_t* rows[kMaxKernelH];  // per kernel row: the input row, or null in the padding
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

bool is_pointwise(const Int8ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

// Convs that read their patches through an IndirectA view (below) instead of patch copies.
bool uses_indirect_path(Int8Isa isa, const Int8ConvGeometry& g) {
  return isa == Int8Isa::Avx512Vnni && g.dilation_w == 1 && !is_pointwise(g);
}

// Convs the pixel-lane kernel can take (with a uint8 output): few output channels, input pixels
// at most 4 bytes apart.
bool pixel_lanes_shape(Int8Isa isa, const Int8ConvGeometry& g) {
  return uses_indirect_path(isa, g) && g.out_c <= 8 && g.stride_w * g.in_c <= 4 &&
         int8_detail::pixel_lanes_supported();
}

// Stride/padding/dilation-general conv on the VNNI path without patch copies: an image's input
// rows (padded with the zero point into per-thread scratch when the conv pads) are the GEMM's A
// through an IndirectA view, one K segment per kernel row (kernel_w * in_c contiguous bytes).
// Tasks are (image, block of output rows); small convs run on the calling thread. With pool2 (the
// pixel-lane kernel only) y receives the conv's 2x2 stride-2 max pool, and the rows are pooled rows.
template <typename OutT>
void conv_indirect(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                   const Int8Output& out, OutT* y, bool pixel_lanes, bool pool2 = false) {
  using int8_detail::IndirectA;
  const int64_t C = g.in_c, H = g.in_h, W = g.in_w, OH = g.out_h(), OW = g.out_w(), N = g.out_c;
  const int64_t KH = g.kernel_h, PH = g.pad_h, PW = g.pad_w;
  // Padded runs read up to 3 bytes past a pixel's run and the pixel-lane kernel up to 256 + K
  // bytes past the last one: they always read the scratch copy.
  const bool padded = PH > 0 || PW > 0 || w.conv_run_bytes > 0 || pixel_lanes;
  const int64_t slack = pixel_lanes ? 256 + w.k : kSlack;
  const int64_t Wp = W + 2 * PW;
  const int64_t prow = Wp * C;  // bytes per (padded) input row
  std::array<int64_t, kMaxKernelH> seg_off;
  for (int64_t i = 0; i < KH; ++i) seg_off[i] = i * g.dilation_h * prow;
  const auto kind = std::is_same_v<OutT, uint8_t> ? int8_detail::OutKind::U8 : int8_detail::OutKind::F32;
  const int8_detail::OutputStage stage = int8_detail::make_output_stage(kind, w, out, y, N);
  const uint8_t z = static_cast<uint8_t>(in_zero_point);

  const int64_t threads = pool_threads();
  const int64_t macs = g.batch * OH * OW * g.gemm_k() * N;
  const bool parallel = threads > 1 && macs >= kParallelMacs && !in_parallel();
  const int64_t rows_per_out = pool2 ? 2 : 1;
  const int64_t YH = OH / rows_per_out, YW = OW / rows_per_out;  // the rows and pixels written
  // Whole images per task when the batch keeps every thread busy, else blocks of output rows.
  const int64_t chunks = parallel && g.batch < 3 * threads ? std::min(YH, (3 * threads + g.batch - 1) / g.batch) : 1;

  auto task = [&](int64_t t) {
    const int64_t n = t / chunks, c = t % chunks;
    const int64_t y0 = YH * c / chunks, y1 = YH * (c + 1) / chunks;
    if (y0 == y1) return;
    const int64_t oh0 = y0 * rows_per_out, oh1 = y1 * rows_per_out;  // conv rows
    IndirectA a;
    a.row_len = OW;
    a.row_step = g.stride_h * prow;
    a.col_step = g.stride_w * C;
    a.seg_off = seg_off.data();
    a.segments = KH;
    const int64_t r0 = oh0 * g.stride_h;  // first (padded) input row read
    if (padded) {
      const int64_t r1 = (oh1 - 1) * g.stride_h + (KH - 1) * g.dilation_h + 1;
      thread_local std::vector<uint8_t> buf;
      const size_t need = static_cast<size_t>((r1 - r0) * prow + slack);
      if (buf.size() < need) buf.resize(need);
      uint8_t* d = buf.data();
      for (int64_t r = r0; r < r1; ++r, d += prow) {
        const int64_t ih = r - PH;
        if (ih < 0 || ih >= H) {
          std::memset(d, z, static_cast<size_t>(prow));
          continue;
        }
        std::memset(d, z, static_cast<size_t>(PW * C));
        std::memcpy(d + PW * C, x + (n * H + ih) * W * C, static_cast<size_t>(W * C));
        std::memset(d + (PW + W) * C, z, static_cast<size_t>(PW * C));
      }
      a.base = buf.data();
    } else {
      a.base = x + (n * H + r0) * W * C;
    }
    int8_detail::OutputStage s = stage;
    s.c = y + ((n * YH + y0) * YW) * N;
    if (pool2) {
      int8_detail::conv_rows_pixel_lanes_maxpool2(a, y1 - y0, w, s);
    } else if (pixel_lanes) {
      int8_detail::conv_rows_pixel_lanes(a, oh1 - oh0, w, s);
    } else if (int8_detail::conv_3x16_applies(w, a, g.kernel_w, C)) {
      int8_detail::conv_rows_3x16_vnni(a, oh1 - oh0, w, s);
    } else {
      int8_detail::gemm_indirect_vnni(a, w, s, 0, (oh1 - oh0) * OW, 0, N);
    }
  };
  const int64_t ntasks = g.batch * chunks;
  if (parallel) {
    run_tasks(ntasks, task);
  } else {
    for (int64_t t = 0; t < ntasks; ++t) task(t);
  }
}

void check_conv(const char* op, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w) {
  int8_checks::geometry(op, g);
  QSLIM_CHECK(in_zero_point >= 0 && in_zero_point <= 255, op, ": input zero point ", in_zero_point,
              " is outside the uint8 range [0, 255]");
  const int64_t run = w.conv_run_bytes, packed_run = int8_detail::round_up(run, 4);
  const int64_t logical_k = run > 0 && w.k % packed_run == 0 ? w.k / packed_run * run : w.k;
  QSLIM_CHECK(w.n == g.out_c && logical_k == g.gemm_k() && (run == 0 || run == g.kernel_w * g.in_c), op,
              ": packed weights are ", w.n, " x ", logical_k, " but input [", g.batch, ", ", g.in_h, ", ", g.in_w,
              ", ", g.in_c, "] with kernel ", g.kernel_h, "x", g.kernel_w, " -> ", g.out_c, " channels needs ",
              g.out_c, " x ", g.gemm_k());
  QSLIM_CHECK(run == 0 || uses_indirect_path(w.isa, g), op, ": weights were packed for a ", g.kernel_h, "x",
              g.kernel_w, " conv with dilation 1 along the width (pack_int8_conv_weights), but got stride ",
              g.stride_h, "x", g.stride_w, ", padding ", g.pad_h, "x", g.pad_w, ", dilation ", g.dilation_h, "x",
              g.dilation_w);
  QSLIM_CHECK(w.a_zero_point == in_zero_point, op, ": weights were packed for input zero point ", w.a_zero_point,
              " but the input's is ", in_zero_point);
  QSLIM_CHECK(g.kernel_h <= kMaxKernelH, op, ": kernel height ", g.kernel_h, " is larger than the supported ",
              kMaxKernelH);
}

// The GEMM reads runs in groups of 4 bytes (padded or multiples of 4; one run may end in a partial
// group); the pixel-lane kernel (few output channels: 16 output pixels per vector instead of 16
// mostly idle channels) takes groups that straddle two runs of >= 3 bytes. Weights packed for
// another geometry with the same K may fit neither: they take the patch path.
bool gemm_runs(const Int8ConvGeometry& g, const PackedInt8Weights& w) {
  return w.conv_run_bytes > 0 || (g.kernel_w * g.in_c) % 4 == 0 || g.kernel_h == 1;
}

// Whether a uint8-output conv runs on the pixel-lane kernel.
bool pixel_lanes_path(const Int8ConvGeometry& g, const PackedInt8Weights& w) {
  return pixel_lanes_shape(w.isa, g) && (gemm_runs(g, w) || g.kernel_w * g.in_c >= 3);
}

template <typename OutT>
void conv_any(const char* op, const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point,
              const PackedInt8Weights& w, const Int8Output& out, OutT* y) {
  check_conv(op, g, in_zero_point, w);
  if constexpr (std::is_same_v<OutT, uint8_t>) int8_checks::u8_output(op, out);
  const int64_t OH = g.out_h(), OW = g.out_w(), K = g.gemm_k(), N = g.out_c;
  const int64_t M = g.batch * OH * OW;
  if (M == 0) return;
  if (is_pointwise(g)) {
    gemm_out(M, x, K, w, out, y, N);
    return;
  }
  const bool pixel_lanes = std::is_same_v<OutT, uint8_t> && pixel_lanes_path(g, w);
  if (uses_indirect_path(w.isa, g) && (gemm_runs(g, w) || pixel_lanes)) {
    conv_indirect(x, g, in_zero_point, w, out, y, pixel_lanes);
    return;
  }
  const int64_t rows = std::clamp<int64_t>(kBlockBytes / K, 16, 512) / 16 * 16;
  const int64_t nblocks = (M + rows - 1) / rows;
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
  const int64_t C = g.in_c, KH = g.kernel_h, KW = g.kernel_w;
  // The VNNI GEMM reads each kernel row's run of kw * c input bytes in groups of 4: runs of other
  // lengths are padded with zero weights (the extra input bytes read are multiplied by 0), except
  // for the pixel-lane kernel, whose groups may straddle two runs of >= 3 bytes (fewer groups).
  const bool pad_runs =
      uses_indirect_path(isa, g) && (KW * C) % 4 != 0 && !(pixel_lanes_shape(isa, g) && KW * C >= 3);
  const int64_t run = pad_runs ? int8_detail::round_up(KW * C, 4) : KW * C, K = KH * run;
  std::vector<int8_t> rows(static_cast<size_t>(g.out_c * K), 0);
  for (int64_t o = 0; o < g.out_c; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < KH; ++i)
        for (int64_t j = 0; j < KW; ++j) rows[o * K + i * run + j * C + c] = w_oihw[((o * C + c) * KH + i) * KW + j];
  PackedInt8Weights p =
      pack_int8_weights(rows.data(), g.out_c, K, K, bias_q, in_zero_point, multiplier, multiplier_count, isa);
  if (pad_runs) p.conv_run_bytes = KW * C;
  return p;
}

void int8_conv2d_u8(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                    const Int8Output& out, uint8_t* y) {
  conv_any("int8_conv2d_u8", x, g, in_zero_point, w, out, y);
}

void int8_conv2d_f32(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                     const Int8Output& out, float* y) {
  conv_any("int8_conv2d_f32", x, g, in_zero_point, w, out, y);
}

bool int8_conv2d_maxpool2_fused(const Int8ConvGeometry& g, const PackedInt8Weights& w) {
  if (!uses_indirect_path(w.isa, g) || !pixel_lanes_path(g, w) || static_cast<int64_t>(w.multiplier.size()) != w.n)
    return false;
  return std::all_of(w.multiplier.begin(), w.multiplier.end(), [](float m) { return m > 0.0f; });
}

// Weights packed for g on isa have runs the pixel-lane kernel reads (pack_int8_conv_weights pads
// only runs shorter than 3 bytes), so only the shape decides.
bool int8_conv2d_maxpool2_shape_fuses(const Int8ConvGeometry& g, Int8Isa isa) { return pixel_lanes_shape(isa, g); }

void int8_conv2d_maxpool2_u8(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point,
                             const PackedInt8Weights& w, const Int8Output& out, uint8_t* y) {
  const char* op = "int8_conv2d_maxpool2_u8";
  check_conv(op, g, in_zero_point, w);
  int8_checks::u8_output(op, out);
  const int64_t OH = g.out_h(), OW = g.out_w();
  QSLIM_CHECK(OH >= 2 && OW >= 2, op, ": the conv's output ", OH, "x", OW, " is smaller than the 2x2 pool");
  if (g.batch == 0) return;
  if (int8_conv2d_maxpool2_fused(g, w)) {
    conv_indirect(x, g, in_zero_point, w, out, y, /*pixel_lanes=*/true, /*pool2=*/true);
    return;
  }
  std::vector<uint8_t> full(static_cast<size_t>(g.batch * OH * OW * g.out_c));
  conv_any(op, x, g, in_zero_point, w, out, full.data());
  int8_maxpool_u8(full.data(), g.batch, OH, OW, g.out_c, 2, 2, 2, 2, 0, 0, y);
}

}  // namespace qslim::cpu
