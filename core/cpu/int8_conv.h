// Internal: INT8 convolution, pooling and element-wise kernels of the INT8 engine, on NHWC uint8
// activations (each tensor has one step s and zero point z: x = s * (q - z)). Weights are int8
// with per-output-channel steps; requantization follows core/cpu/int8_gemm.h.
#pragma once
#include <cstdint>
#include <vector>

#include "core/cpu/int8_gemm.h"

namespace qslim::cpu {

struct Int8ConvGeometry {
  int64_t batch = 1, in_h = 0, in_w = 0, in_c = 0;
  int64_t out_c = 0, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t out_h() const { return (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  int64_t gemm_k() const { return kernel_h * kernel_w * in_c; }
};

// Weights of a groups == 1 conv, given as OIHW int8 [out_c, in_c, kh, kw] (the converted layer's
// layout), reordered to the NHWC patch order (kh, kw, c) and packed. Padding reads the input zero
// point, so packed_bias needs no border correction. For the VNNI path each kernel row's run of
// kw * c values may be padded to a multiple of 4 (PackedInt8Weights::conv_run_bytes): such weights
// serve convs with the same kernel, in_c and dilation-1 width only (others are refused).
PackedInt8Weights pack_int8_conv_weights(const int8_t* w_oihw, const Int8ConvGeometry& g, const int32_t* bias_q,
                                         int32_t in_zero_point, const float* multiplier, int64_t multiplier_count,
                                         Int8Isa isa = best_int8_isa());

// groups == 1 conv: x NHWC uint8 [batch, in_h, in_w, in_c] -> y NHWC [batch, out_h, out_w, out_c].
// 1x1 stride-1 unpadded convs use x directly as the GEMM's A; on AVX512-VNNI other convs with
// dilation 1 along the width read their patches from x (or a zero-point-padded copy of its rows)
// without copies; the rest build patches in per-thread scratch (never the whole im2col matrix).
void int8_conv2d_u8(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                    const Int8Output& out, uint8_t* y);
void int8_conv2d_f32(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point, const PackedInt8Weights& w,
                     const Int8Output& out, float* y);

// int8_conv2d_u8 followed by a 2x2 stride-2 max pool without padding (int8_maxpool_u8): y NHWC
// [batch, out_h / 2, out_w / 2, out_c] (floor), bit-identical to the two calls. When
// int8_conv2d_maxpool2_fused holds (the pixel-lane path, every multiplier positive) the pool takes
// the max of the int32 accumulators, exact as the requantization is then monotone, and the conv's
// full map is never stored; otherwise the map is computed into a temporary and pooled.
bool int8_conv2d_maxpool2_fused(const Int8ConvGeometry& g, const PackedInt8Weights& w);
// Whether convs of geometry g, with weights packed for it on isa, take the fused kernel when their
// multipliers are all positive (the pixel-lane path: at most 8 output channels, pixels <= 4 bytes apart).
bool int8_conv2d_maxpool2_shape_fuses(const Int8ConvGeometry& g, Int8Isa isa = best_int8_isa());
void int8_conv2d_maxpool2_u8(const uint8_t* x, const Int8ConvGeometry& g, int32_t in_zero_point,
                             const PackedInt8Weights& w, const Int8Output& out, uint8_t* y);

// Depthwise conv (groups == in_c == out_c), direct. Weights OIHW int8 [c, 1, kh, kw]; bias_q and
// multiplier per channel (multiplier_count c or 1). The input zero point is handled exactly
// (padding contributes nothing, as in the float conv).
struct PackedDepthwiseWeights {
  int64_t channels = 0, kernel_h = 0, kernel_w = 0;
  std::vector<int16_t> taps;     // [kh * kw][c]: widened for the kernel
  std::vector<int32_t> bias;     // [c] bias_q
  std::vector<float> multiplier;  // [c]
  int32_t in_zero_point = 0;
  // Path chosen at pack time: Avx512Vnni runs vpdpbusd on 4 horizontal taps per 32-bit lane from
  // the fields below (left empty by a build without that kernel); Scalar and Avx2 run the portable
  // direct loop on `taps`. Every path gives bit-identical results.
  Int8Isa isa = Int8Isa::Scalar;
  int64_t tap_groups_w = 0;             // ceil(kernel_w / 4)
  std::vector<int8_t> interleaved;      // [c16 units][kh][tap_groups_w][16 channels][4 taps], zero-filled
  std::vector<int32_t> folded_bias;     // [units * 16]: bias_q - in_zero_point * sum of the channel's taps
  std::vector<float> multiplier_padded;  // [units * 16]
};
PackedDepthwiseWeights pack_int8_depthwise_weights(const int8_t* w_c1hw, int64_t channels, int64_t kernel_h,
                                                   int64_t kernel_w, const int32_t* bias_q, int32_t in_zero_point,
                                                   const float* multiplier, int64_t multiplier_count,
                                                   Int8Isa isa = best_int8_isa());
void int8_depthwise_u8(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                       const Int8Output& out, uint8_t* y);
void int8_depthwise_f32(const uint8_t* x, const Int8ConvGeometry& g, const PackedDepthwiseWeights& w,
                        const Int8Output& out, float* y);

// ---- element-wise, layout and pooling (NHWC uint8 unless noted) ----
// q = clamp(nearbyint(x / s) + z, qmin, qmax); NCHW f32 [n, c, h, w] in, NHWC uint8 out.
void quantize_nchw_to_nhwc_u8(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float scale,
                              int32_t zero_point, int32_t qmin, int32_t qmax, uint8_t* y);
// x = s * (q - z); NHWC uint8 in, NCHW f32 out.
void dequantize_nhwc_to_nchw_u8(const uint8_t* q, int64_t n, int64_t c, int64_t h, int64_t w, float scale,
                                int32_t zero_point, float* y);
// y = requant(s_a (a - z_a) + s_b (b - z_b)) to (s_y, z_y), clamp [qmin, qmax] (ReLU fused via qmin).
void int8_add_u8(const uint8_t* a, float scale_a, int32_t zp_a, const uint8_t* b, float scale_b, int32_t zp_b,
                 int64_t count, float scale_y, int32_t zp_y, int32_t qmin, int32_t qmax, uint8_t* y);
// Requantizes src (pixels x src_c, NHWC) into columns [c_offset, c_offset + src_c) of dst (pixels x dst_c).
void int8_requantize_into_u8(const uint8_t* src, int64_t pixels, int64_t src_c, float scale_src, int32_t zp_src,
                             uint8_t* dst, int64_t dst_c, int64_t c_offset, float scale_dst, int32_t zp_dst);
// Any unary op through a 256-entry table: y = table[x].
void int8_lookup_u8(const uint8_t* x, int64_t count, const uint8_t table[256], uint8_t* y);
// Max pooling (same step and zero point in and out; max commutes with monotone quantization).
void int8_maxpool_u8(const uint8_t* x, int64_t batch, int64_t in_h, int64_t in_w, int64_t c, int64_t kernel_h,
                     int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, uint8_t* y);
// Average pooling, count_include_pad = false, rounded half-even; output step/zero point may differ
// from the input's (requantized).
void int8_avgpool_u8(const uint8_t* x, int64_t batch, int64_t in_h, int64_t in_w, int64_t c, int64_t kernel_h,
                     int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                     float scale_x, int32_t zp_x, float scale_y, int32_t zp_y, uint8_t* y);
// Global average pooling NHWC [batch, h, w, c] -> [batch, c], as float (the usual feed of a Linear
// head that the engine then quantizes) or requantized uint8.
void int8_global_avgpool_f32(const uint8_t* x, int64_t batch, int64_t h, int64_t w, int64_t c, float scale_x,
                             int32_t zp_x, float* y);
void int8_global_avgpool_u8(const uint8_t* x, int64_t batch, int64_t h, int64_t w, int64_t c, float scale_x,
                            int32_t zp_x, float scale_y, int32_t zp_y, uint8_t* y);

}  // namespace qslim::cpu
