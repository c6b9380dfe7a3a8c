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
// Float adds: an nn::Add sums in f32 (inputs held only as uint8 are dequantized on the fly) and
// writes its sum straight onto the grid its consumers want when they all want one, else f32.
//
// Residual adds (Int8PlanOptions::integer_residual_adds, off by default): a float nn::Add (the
// config left it unquantized) whose one input, the branch, is the output of an integer conv/linear
// used by nothing else, and whose other input, the skip, is held as uint8 anyway (it feeds integer
// layers, e.g. the block input feeding the block's conv1), runs on integers (ResidualAddInt8) when
// its output (after a fused ReLU) is wanted on one grid g by all its integer consumers: the branch's
// conv requantizes straight onto a grid chosen for it (branch_grid_for_residual_add), the skip is
// read as the uint8 its other consumers get, and the add requantizes onto g with the ReLU in qmin.
// A float add whose skip is then held only as uint8 (the last block's add, feeding a float pool)
// dequantizes it on the fly. Error this adds against the simulated path, where the residual stream
// stays float and only each conv's input is quantized: every element of the skip is rounded onto
// its consumers' grid and of the branch onto its own grid (each at most half a step, the branch's
// step about the output step in ReLU blocks); a block's rounding travels on through the skip path.
// These are new errors on every element, where the float path differs from the simulated one only
// on rare rounding ties, so the logits follow the simulated path about twice less closely.
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
  ResidualAddInt8,  // nn::Add planned on integers (input grids chosen by the planner, see above)
  AddF32,         // nn::Add of two inputs (each read as f32, or as uint8 when held only so)
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

// The uint8 grid for the branch b of a residual add y = clamp(b + s) onto `out` whose skip input s
// lies on `skip`: it spans [out_lo - skip_hi, out_hi - skip_lo] (and 0), outside which b cannot
// change the clamped and rounded y, so clipping b there is exact. False for degenerate grids.
bool branch_grid_for_residual_add(const U8Grid& out, const U8Grid& skip, U8Grid* branch);

struct Int8PlanOptions {
  // Plan residual adds on integers (ResidualAddInt8, see above); off keeps them float.
  bool integer_residual_adds = false;
};

// Traces `model` (eval mode) on a random [2, ...input_shape] example and plans it.
Int8Plan plan_int8(nn::Module& model, const Shape& input_shape, const Int8PlanOptions& options = {});

}  // namespace qslim::quant
