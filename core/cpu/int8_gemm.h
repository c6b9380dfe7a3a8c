// Internal: INT8 GEMM for the INT8 inference engine (QUANT_SPEC.md §8, DESIGN.md "INT8 kernels").
//
//   acc[m][n] = sum_k A[m][k] * W[n][k]          A: uint8 activations (row-major, M x K, lda)
//                                                W: int8 weights, one row per output channel
//   v[m][n]   = (acc[m][n] + packed_bias[n]) * multiplier[n]        (float multiply)
//   packed_bias[n] = bias_q[n] - a_zero_point * sum_k W[n][k]       (int32, folded at pack time)
//
// Output stages: uint8 / int8 (q = clamp(nearbyint(v) + out_zero_point, qmin, qmax); ReLU and
// ReLU6 are expressed through qmin/qmax), float (clamp(v, fmin, fmax)), or raw int32 acc.
// Rounding is round-half-even (the default FP environment), identical in every path.
//
// Weights are packed once (4 consecutive K values per 32-bit lane, K padded to a multiple of 4,
// N padded to the kernel's register block) for the ISA chosen at pack time. Paths: AVX512-VNNI
// (vpdpbusd), AVX2 (exact: no saturating vpmaddubsw on full-range inputs; W packed pre-widened,
// 2 int16 K values per lane, for vpmaddwd) and a scalar reference; best_int8_isa() picks by CPU
// features at run time. Every path gives bit-identical results (layouts: int8_gemm_kernels.h).
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

namespace qslim::cpu {

enum class Int8Isa : uint8_t { Scalar, Avx2, Avx512Vnni };
Int8Isa best_int8_isa();                // the fastest path this CPU supports
bool int8_isa_supported(Int8Isa isa);   // CPU check (Scalar: always)
const char* int8_isa_name(Int8Isa isa);  // "scalar", "avx2", "avx512-vnni"

struct PackedInt8Weights {
  int64_t n = 0, k = 0;  // logical sizes
  Int8Isa isa = Int8Isa::Scalar;
  std::vector<int8_t> data;        // ISA-specific layout (int8_gemm_kernels.h), from data_offset on
  int64_t data_offset = 0;         // chosen at pack time so the layout starts 64-byte aligned
  std::vector<int32_t> row_sums;   // sum_k W[n][k], [n]
  std::vector<int32_t> bias;       // packed_bias, [n] (bias_q - a_zero_point * row_sums)
  std::vector<float> multiplier;   // [n] (per-tensor multipliers are expanded)
  int32_t a_zero_point = 0;
  // Conv weights only (pack_int8_conv_weights, VNNI path): when > 0, every kernel row's run of
  // run_bytes = kernel_w * in_c K values is padded with zero weights to a multiple of 4, so k
  // counts the padding (k = kernel_h * round_up(run_bytes, 4)) and only int8_conv2d_* accept them.
  int64_t conv_run_bytes = 0;
  bool empty() const { return n == 0; }
};

// Packs W (n x k, row stride ldw) with its int32 bias (may be null: zero), the activation zero
// point and the per-output-channel float multipliers (multiplier_count == n, or 1 for one shared
// value). Throws when isa is not supported by this CPU or sizes are invalid.
PackedInt8Weights pack_int8_weights(const int8_t* w, int64_t n, int64_t k, int64_t ldw, const int32_t* bias_q,
                                    int32_t a_zero_point, const float* multiplier, int64_t multiplier_count,
                                    Int8Isa isa = best_int8_isa());

struct Int8Output {
  int32_t zero_point = 0;
  int32_t qmin = 0, qmax = 255;  // uint8 output; int8: -128..127
  float fmin = -std::numeric_limits<float>::infinity();  // float output clamp (ReLU: 0)
  float fmax = std::numeric_limits<float>::infinity();
};

// C (m x n, row stride ldc). Threads over M on the kernels' pool when the work is large enough.
void gemm_u8s8_u8(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                  uint8_t* c, int64_t ldc);
void gemm_u8s8_s8(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                  int8_t* c, int64_t ldc);
void gemm_u8s8_f32(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                   float* c, int64_t ldc);
// Raw accumulators (no bias, no zero-point correction): for tests and benchmarks.
void gemm_u8s8_s32(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, int32_t* c, int64_t ldc);

// The formula above written directly from W (not packed), for tests: c receives the float output
// stage clamp(v, out.fmin, out.fmax); the uint8/int8 stages are nearbyint of that v (with infinite
// fmin/fmax) plus the zero point, clamped to [qmin, qmax].
void gemm_u8s8_reference_f32(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* w,
                             int64_t ldw, const int32_t* bias_q, int32_t a_zero_point, const float* multiplier,
                             int64_t multiplier_count, const Int8Output& out, float* c, int64_t ldc);

// Weight-only INT8 GEMM for dynamic-quantized layers: C (m x n, f32) = A (m x k, f32) x
// (W (n x k, int8) * scale[n])^T + bias[n]; W is dequantized in cache-sized panels inside the
// product, never as a whole float copy. scale_count == n or 1; bias may be null.
void gemm_f32_s8w(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const int8_t* w, int64_t ldw,
                  const float* scale, int64_t scale_count, const float* bias, float* c, int64_t ldc);

}  // namespace qslim::cpu
