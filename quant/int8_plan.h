// Planning the INT8 engine's program from a traced converted model: which traced nodes run on
// integer kernels, what is fused into them, and in which representation each result is kept.
//
// Representations: f32, or uint8 on one grid (step s, zero point z, [qmin, qmax]: x = s * (q - z)).
// Signed activation grids become uint8 with z + 128 (and qmin/qmax + 128), so one kernel family
// serves signed and unsigned activations.
//
// Fusion: a converted Conv2D/Linear absorbs the chain that follows it while each link is its only
// consumer: Identity / Dropout (eval), a float BatchNorm2D in eval (folded into the per-channel
// multiplier and the int32 bias), ReLU and ReLU6 (clamps). A float Add and an integer Add absorb a
// following ReLU.
//
// Output representation: a producer writes uint8 on grid g when every consumer wants g, looking
// through ReLU, ReLU6, max pooling, Identity/Dropout and reshapes (all commute with quantization,
// so quantizing first and pooling/clamping the integers is exact); otherwise f32. A value that
// lies on a grid in the simulated path too (the output of a quantized ReLU, max pool or concat)
// is exact as uint8 and converts to other grids or f32 without loss.
//
// Differences from the simulated path: the integer accumulation is exact where the float conv
// rounds, and the bias (with a folded BatchNorm) is rounded to the accumulator's unit
// s_in * s_w[c] (* bn scale); both move a value across a rounding boundary now and then, so a
// quantized value differs by one step on a small share of elements. Activation grids that round
// half away from zero are quantized half to even here (they differ only on exact ties).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "quant/int8_graph.h"
#include "quant/quant_grid.h"

namespace qslim::quant {

struct U8Grid {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = 0, qmax = 255;
  bool operator==(const U8Grid& o) const {
    return scale == o.scale && zero_point == o.zero_point && qmin == o.qmin && qmax == o.qmax;
  }
  bool operator!=(const U8Grid& o) const { return !(*this == o); }
  // q = clamp(nearbyint(x * (1/s)) + z, qmin, qmax): the float rounding of fake_quantize.
  int32_t quantize(float x) const;
  std::string to_string() const;
};

// The uint8 grid of an activation quantization (bits <= 8), or false when it does not fit uint8.
bool to_u8_grid(float scale, int64_t zero_point, const QuantGrid& grid, U8Grid* out);

enum class PlanOp {
  ConvInt8,       // converted Conv2D, groups == 1
  DepthwiseInt8,  // converted Conv2D, groups == in == out channels
  LinearInt8,     // converted Linear
  AddInt8,        // ConvertedOp Add (two input grids)
  ConcatInt8,     // ConvertedOp Concat (output grid)
  ClampInt8,      // ConvertedOp ReLU / ReLU6 (input grid; lo/hi clamp)
  MaxPoolInt8,    // ConvertedOp MaxPool2D (input grid)
  GlobalPoolInt8,  // ConvertedOp AdaptiveAvgPool2D(1) (input grid)
  LutInt8,        // ConvertedOp of an element-wise activation (input grid): a 256-entry table
  AddF32,         // nn::Add of two inputs
  Clamp,          // nn::ReLU / ReLU6 (on whatever its input is)
  MaxPool,        // nn::MaxPool2D
  GlobalPool,     // nn::AdaptiveAvgPool2D(1)
  Alias,          // Identity, Dropout in eval
  Reshape,        // flatten / reshape
  Float,          // anything else: the module's own forward in f32
};
const char* plan_op_name(PlanOp op);

struct Want {
  enum class Kind { Any, F32, U8 };
  Kind kind = Kind::Any;
  U8Grid grid;
  bool operator==(const Want& o) const { return kind == o.kind && (kind != Kind::U8 || grid == o.grid); }
};

struct PlanNode {
  PlanOp op = PlanOp::Float;
  int traced = -1;              // the traced node (the main module)
  std::vector<int> fused;       // traced nodes absorbed into this one, in order
  std::vector<int> inputs;      // traced value ids
  int output = -1;              // traced value id (after fusion)
  std::vector<U8Grid> in_grids;  // integer ops: the grid of each input (ConcatInt8: its output grid)
  // Epilogue of the integer layers: per-channel affine from a folded BatchNorm2D (empty: none),
  // then the float clamp of fused activations.
  std::vector<float> bn_scale, bn_shift;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
  Want out;  // F32 or U8 (never Any after planning; Reshape/Alias/Clamp/MaxPool follow their input)
};

struct Int8Plan {
  TracedGraph graph;
  std::vector<PlanNode> nodes;  // execution order
  // "conv1 ConvInt8 [+relu1] -> u8(s=0.02, z=128)" per node.
  std::string describe() const;
  int count(PlanOp op) const;
};

// Traces `model` (eval mode) on a zero-filled [2, ...input_shape] example and plans it.
Int8Plan plan_int8(nn::Module& model, const Shape& input_shape);

}  // namespace qslim::quant
