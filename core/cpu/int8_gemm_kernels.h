// Internal to the INT8 GEMM (int8_gemm.h): the per-ISA block kernels, the packed layouts they read
// and the output stage they share. Every path computes the same int32 accumulators and applies the
// same float operations in the same order, so their outputs are bit-identical.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/cpu/int8_gemm.h"

namespace qslim::cpu::int8_detail {

// Packed layouts (K is padded with zero weights, N with zero rows):
//   Avx512Vnni: [ceil(n/16) blocks][kp/4][16 channels][4 k]  int8, kp = round_up(k, 4)
//   Avx2:       [ceil(n/8) blocks][kp/2][8 channels][2 k]    int16 (pre-widened), kp = round_up(k, 2)
//   Scalar:     [n][k]                                        int8 (a plain copy)
constexpr int64_t kVnniBlock = 16;
constexpr int64_t kAvx2Block = 8;
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

enum class OutKind : uint8_t { S32, U8, S8, F32 };

struct OutputStage {
  OutKind kind = OutKind::S32;
  const int32_t* bias = nullptr;        // [n] packed bias (unused for S32)
  const float* multiplier = nullptr;    // [n]
  int32_t zero_point = 0;
  float qlo = 0, qhi = 0;               // v is clamped to [qmin - zp, qmax - zp] before rounding
  float fmin = 0, fmax = 0;             // F32 clamp
  void* c = nullptr;
  int64_t ldc = 0;
};

// One output element from its raw accumulator. The clamp happens before rounding (equivalent to
// clamping after, as the bounds are integers) so no out-of-range float is converted to int32;
// `x > lo ? x : lo` is exactly what max_ps computes, NaN included.
inline void store_one(const OutputStage& o, int64_t row, int64_t col, int32_t acc) {
  if (o.kind == OutKind::S32) {
    static_cast<int32_t*>(o.c)[row * o.ldc + col] = acc;
    return;
  }
  const int32_t sum = static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(o.bias[col]));
  float v = static_cast<float>(sum) * o.multiplier[col];
  if (o.kind == OutKind::F32) {
    v = v > o.fmin ? v : o.fmin;
    v = v < o.fmax ? v : o.fmax;
    static_cast<float*>(o.c)[row * o.ldc + col] = v;
    return;
  }
  v = v > o.qlo ? v : o.qlo;
  v = v < o.qhi ? v : o.qhi;
  const int32_t q = static_cast<int32_t>(std::nearbyint(v)) + o.zero_point;
  if (o.kind == OutKind::U8)
    static_cast<uint8_t*>(o.c)[row * o.ldc + col] = static_cast<uint8_t>(q);
  else
    static_cast<int8_t*>(o.c)[row * o.ldc + col] = static_cast<int8_t>(q);
}

inline const int8_t* packed_base(const PackedInt8Weights& w) { return w.data.data() + w.data_offset; }

// C rows [m0, m1) x columns [n0, n1) of the product; n0 is a multiple of the path's column unit
// (column_unit below). Single-threaded: the caller splits the work.
void gemm_block_scalar(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out,
                       int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void gemm_block_avx2(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out, int64_t m0,
                     int64_t m1, int64_t n0, int64_t n1);
void gemm_block_vnni(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out, int64_t m0,
                     int64_t m1, int64_t n0, int64_t n1);

// Rows of the register block and columns of one panel for each path (how the caller splits work).
int64_t row_unit(Int8Isa isa);
int64_t column_unit(Int8Isa isa);

// The output stage that gemm_u8s8_<kind> applies (quantized kinds read bias and multiplier from w).
OutputStage make_output_stage(OutKind kind, const PackedInt8Weights& w, const Int8Output& out, void* c,
                              int64_t ldc);

// Indirect A for the VNNI path (convolutions without patch copies). Row m of A (an output pixel)
// starts at base + (m / row_len) * row_step + (m % row_len) * col_step, and its K values are
// `segments` runs of seg_bytes = w.k / segments bytes at seg_off[s] from there, concatenated in
// the packed weights' K order. A plain row-major A is row_len 1, row_step lda, one segment at 0.
// Multi-segment views need seg_bytes % 4 == 0; one segment may end in a partial group of 4 bytes,
// which is read with masked loads (never past the row).
struct IndirectA {
  const uint8_t* base = nullptr;
  int64_t row_len = 1, row_step = 0, col_step = 0;
  const int64_t* seg_off = nullptr;
  int64_t segments = 1;
};
// C rows [m0, m1) x columns [n0, n1) (n0 a multiple of column_unit(Avx512Vnni)); C row m is row m
// of out.c. Single-threaded.
void gemm_indirect_vnni(const IndirectA& a, const PackedInt8Weights& w, const OutputStage& out, int64_t m0,
                        int64_t m1, int64_t n0, int64_t n1);

// Direct kernel for convs whose kernel rows are 3 taps at stride 1 over 16 input channels, with 16
// output channels (conv_3x16_applies): output rows [0, rows) of row_len pixels of view a.
bool conv_3x16_applies(const PackedInt8Weights& w, const IndirectA& a, int64_t kernel_w, int64_t in_c);
void conv_rows_3x16_vnni(const IndirectA& a, int64_t rows, const PackedInt8Weights& w, const OutputStage& out);

// Pixel-lane kernel for convs with few output channels: 16 neighbouring output pixels per vector,
// one output channel's 4 weights broadcast. Needs AVX512-VBMI as well (pixel_lanes_supported()),
// w.n <= 8 (VNNI-packed), a uint8 output stage with ldc == w.n, a view whose pixels are at most
// 4 bytes apart (col_step <= 4) with runs of w.k / segments bytes, either multiples of 4 or at
// least 3 (a group of 4 K values then spans at most two runs), and readable memory up to
// 256 + w.k bytes past the last row's last run. Writes output rows [0, rows) of row_len pixels.
bool pixel_lanes_supported();
void conv_rows_pixel_lanes(const IndirectA& a, int64_t rows, const PackedInt8Weights& w, const OutputStage& out);
// The same conv followed by a 2x2 stride-2 max pool (floor): pooled rows [0, rows) of row_len / 2
// pixels from conv rows [0, 2 rows), only the pooled map stored. Needs every multiplier > 0 (the
// requantization is then monotone, so pooling the accumulators is exact).
void conv_rows_pixel_lanes_maxpool2(const IndirectA& a, int64_t rows, const PackedInt8Weights& w,
                                    const OutputStage& out);

}  // namespace qslim::cpu::int8_detail
