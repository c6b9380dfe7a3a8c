// The steps of an INT8 engine program: each reads and writes buffers holding one value for the
// whole batch. Values are f32 or uint8 on one grid (see quant/int8_plan.h), laid out
//   Plain    row-major per sample as the model sees it (NCHW for feature maps),
//   NHWC     feature maps [C, H, W] stored channel-last (every uint8 feature map),
//   FlatNHWC a [C*H*W] vector flattened from an NHWC map (features in (h, w, c) order).
// Steps wrap the kernels of core/cpu/int8_gemm.h and core/cpu/int8_conv.h, a few element-wise
// loops of their own, and a fallback that runs a module's float forward on views of the buffers.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "nn/size2.h"
#include "quant/int8_plan.h"

namespace qslim::quant {

class ConvertedWeightLayer;
class ConvertedConv2D;
class ConvertedLinear;

enum class Layout : uint8_t { Plain, NHWC, FlatNHWC };
const char* layout_name(Layout l);

struct EValue {
  bool u8 = false;
  U8Grid grid;  // u8 only: the grid, [qmin, qmax] the range the data lie in
  Layout layout = Layout::Plain;
  Shape shape;                  // per sample, as traced
  int64_t c = 0, h = 1, w = 1;  // NHWC / FlatNHWC: the map's geometry
  int buffer = -1;              // -1: the engine's input tensor
  int64_t numel() const { return numel_of(shape); }
  int64_t sample_bytes() const { return numel() * (u8 ? 1 : 4); }
  std::string describe() const;  // "u8(s=.., z=..) NHWC [16, 28, 28]"
};

// Buffers of one run. Every buffer id maps to an f32 arena tensor (large enough for the batch);
// buffer -1 is the input.
struct RunContext {
  int64_t batch = 0;
  Tensor input;                // f32 [N, ...] contiguous
  std::vector<Tensor> arenas;  // indexed by buffer id
  void* at(int buffer) const { return buffer < 0 ? input.raw_data() : arenas[buffer].raw_data(); }
  // f32 view [N, ...shape] of a Plain f32 value.
  Tensor view(const EValue& v) const;
};

class Step {
 public:
  virtual ~Step() = default;
  virtual void run(const RunContext& ctx) const = 0;
  virtual std::string describe() const = 0;
  std::vector<int> reads, writes;  // buffer ids
};
using StepPtr = std::unique_ptr<Step>;

// f32 -> u8 on out.grid (Plain feature maps become NHWC; other layouts are kept).
StepPtr quantize_step(const EValue& in, const EValue& out);
// u8 -> f32, same layout.
StepPtr dequantize_step(const EValue& in, const EValue& out);
// u8 -> u8 on another grid through a 256-entry table (exact: dequantize, then quantize).
StepPtr requantize_step(const EValue& in, const EValue& out);
// f32 NHWC / FlatNHWC -> Plain (NCHW order).
StepPtr relayout_step(const EValue& in, const EValue& out);

// Converted conv / depthwise conv / linear with the plan's epilogue (folded BatchNorm, clamps).
// Input u8 NHWC (Linear: Plain or FlatNHWC, whose order is folded into the packed weight);
// output u8 on out.grid or f32 (NHWC for convs, Plain for Linear).
// Whether the layer's int32 bias (with the plan's folded BatchNorm) stays clear of int32 overflow
// next to the largest accumulator: false for degenerate scales (e.g. an input step floored to 1e-8
// with a non-zero bias); such layers run in float.
bool int8_bias_fits(const ConvertedWeightLayer& layer, const PlanNode& p, float in_scale);
StepPtr conv_step(const ConvertedConv2D& layer, const PlanNode& p, const EValue& in, const EValue& out);
StepPtr linear_step(const ConvertedLinear& layer, const PlanNode& p, const EValue& in, const EValue& out);
// A groups == 1 conv with a uint8 output followed by a 2x2 stride-2 max pool (floor, no padding):
// `pooled` is the pool's output, on the conv's output grid. Null when the fused kernel does not
// apply to this layer (cpu::int8_conv2d_maxpool2_fused: the pixel-lane path, positive multipliers).
StepPtr conv_maxpool2_step(const ConvertedConv2D& layer, const PlanNode& p, const EValue& in, const EValue& pooled);

// a + b (same layout), clamped to [lo, hi]: u8 inputs on their grids -> u8 out.grid (requantized,
// int8_add_u8); any mix of f32 and u8 inputs -> f32, plus, in the same pass, copies quantized onto
// each of `quantized`.
StepPtr elementwise_add_step(const EValue& a, const EValue& b, const EValue& out, float lo, float hi,
                             std::vector<EValue> quantized = {});
// Clamp to [lo, hi] (ReLU / ReLU6): u8 (to out.grid's range) or f32.
StepPtr clamp_step(const EValue& in, const EValue& out, float lo, float hi);
// Max pooling of a u8 NHWC map (same grid in and out).
StepPtr maxpool_u8_step(const EValue& in, const EValue& out, const nn::Size2& kernel, const nn::Size2& stride,
                        const nn::Size2& padding);
// Global average pooling: u8 NHWC or f32 (NHWC or Plain) in; f32 or u8 (out.grid) [C, 1, 1] out.
StepPtr global_pool_step(const EValue& in, const EValue& out);
// y = f(x) for an element-wise op on u8 input through a 256-entry table: table[q] holds the op's
// own float forward of (q - z) * s, quantized onto out.grid (u8 out) or as is (f32 out).
StepPtr lut_step(nn::Module& op, const EValue& in, const EValue& out);
// Channel concat of u8 NHWC maps into out.grid.
StepPtr concat_u8_step(const std::vector<EValue>& ins, const EValue& out);
// The module's own float forward on Plain f32 inputs, writing a Plain f32 output.
StepPtr float_module_step(nn::ModulePtr module, const std::string& name, const std::vector<EValue>& ins,
                          const EValue& out);

}  // namespace qslim::quant
