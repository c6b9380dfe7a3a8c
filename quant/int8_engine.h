// Int8Engine: runs a converted model (quant::convert, or quant::load_converted) end to end on the
// integer kernels (QUANT_SPEC.md §8).
//
//   quant::Int8Engine engine(*converted, {1, 28, 28});
//   Tensor logits = engine.run(images);   // f32 [N, 1, 28, 28] -> f32 [N, classes], any N
//
// The model is traced once (quant/int8_graph.h) and planned (quant/int8_plan.h): converted convs
// and linears run as u8 x s8 -> s32 GEMMs with weights packed once, folded BatchNorm, fused
// ReLU/ReLU6 and requantization straight into the next layer's input grid; quantized adds,
// concats and pooling run on integers; the input is quantized once and the logits dequantized.
// Layers left in float by the config (skipped, dynamic-quantized, squeeze-excite multiplies, ...)
// run their own float forward. Results agree with the simulated path (model.forward) within a few
// quantization steps of the output.
//
// Buffers are planned by liveness and allocated for the largest batch seen; a steady-state run
// allocates only the returned logits. Large batches run in tiles of a few images whose buffers stay
// in the per-core cache, one tile per thread (single-threaded kernels; equal tiles, their count a
// multiple of the threads, so no thread waits on a longer one); a batch of one tile or less
// (batch-1 latency) runs in one piece and the kernels thread inside each step when the work is
// large. Results do not depend on the tiling or the thread count.
//
// The model is held (float fallback steps call its modules) and put in eval mode; it must not be
// changed while the engine exists. run() is not thread-safe (one engine per thread).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/int8_plan.h"
#include "quant/int8_steps.h"

namespace qslim::quant {

struct Int8EngineOptions {
  // Share buffers between values whose lifetimes do not overlap. Off keeps every value of the
  // last run for inspect() (debugging, per-layer comparisons; nothing is fused away, see
  // fuse_pooling) and runs the batch in one piece.
  bool reuse_buffers = true;
  // Large batches run the whole program on tiles of images whose buffers fit in about this many
  // bytes (so intermediate maps stay in the per-core cache), one tile per thread at a time with
  // single-threaded kernels. A batch no larger than one tile runs in one piece, with the kernels
  // threading inside each step. 0: never tile.
  int64_t tile_bytes = 512 << 10;
  // Plan residual adds that the config left in float on integers (see quant/int8_plan.h). Every such
  // add rounds its two inputs onto 8-bit grids, so the results follow the simulated path less
  // closely; the float adds are a small share of a tiled run (resnet20: about 2% faster, mean logit
  // difference to the simulated path 0.15 -> 0.37 output steps), hence off by default.
  bool integer_residual_adds = false;
  // A conv whose only consumer is a 2x2 stride-2 max pool writes the pooled map directly when the
  // fused kernel applies (LeNet's first conv: cpu::int8_conv2d_maxpool2_u8), bit-identical to the
  // two steps. Needs reuse_buffers: the conv's full map is never held, so inspect() cannot show it.
  bool fuse_pooling = true;
};

class Int8Engine {
 public:
  // input_shape: one sample, e.g. [1, 28, 28]. Throws when the model cannot be traced.
  Int8Engine(nn::ModulePtr model, const Shape& input_shape, Int8EngineOptions options = {});

  // x: f32 [N, ...input_shape] (N >= 1). Returns f32 [N, ...output shape].
  Tensor run(const Tensor& x);

  const Int8Plan& plan() const { return plan_; }
  const Shape& input_shape() const { return input_shape_; }
  // The program, one step per line.
  std::string describe() const;
  size_t num_steps() const { return steps_.size(); }
  // Steps of each kind, e.g. for tests: count_steps("int8 conv").
  int count_steps(const std::string& prefix) const;
  // Bytes held by the buffers for the largest batch run so far.
  size_t buffer_bytes() const;
  // The most images per tile (see Int8EngineOptions::tile_bytes).
  int64_t tile() const { return tile_; }
  // Runs x `reps` times in one piece (no tiling) and returns, per step, its describe() line and
  // median seconds.
  std::vector<std::pair<std::string, double>> profile(const Tensor& x, int reps = 5);
  // Traced value v of the last run as f32 [N, ...shape] (dequantized, in the model's layout), as
  // the engine holds it (a u8 value: quantized onto the grid its consumers read). Needs an engine
  // built with reuse_buffers == false.
  Tensor inspect(int traced_value) const;

 private:
  int new_buffer(int64_t sample_bytes);
  int add_value(EValue v);
  // The value of traced value v as u8 on grid g (or a grid that g accepts), inserting a conversion.
  int as_u8(int v, const U8Grid& g);
  // The value of traced value v as f32; plain == true also requires the Plain layout.
  int as_f32(int v, bool plain);
  void add_step(StepPtr s);
  // The value of traced value v that a float add reads: an f32 one if the engine holds any, else
  // the uint8 one as produced (the add dequantizes it on the fly).
  int held_for_float_add(int v);
  // The distinct input grids of the integer nodes that consume traced value v directly.
  std::vector<U8Grid> grids_wanted(int v) const;
  // The max pool node that a conv's uint8 output may be fused into (its only consumer, 2x2 stride 2,
  // unpadded, reading the conv's grid), or null.
  const PlanNode* fusable_maxpool2(const PlanNode& conv) const;
  void build();
  void plan_buffers();
  // Sizes the buffers of `contexts` run contexts for `batch` images each.
  void ensure_capacity(int64_t batch, size_t contexts);
  void run_steps(RunContext& ctx, const Tensor& x, Tensor& y, int64_t row0) const;

  nn::ModulePtr model_;
  Shape input_shape_;
  Int8EngineOptions options_;
  Int8Plan plan_;
  std::vector<EValue> values_;        // engine values
  std::vector<int> native_;           // traced value -> engine value as produced
  std::vector<std::vector<int>> converted_;  // traced value -> engine values made from it
  std::vector<int64_t> buffer_bytes_;  // per buffer id: bytes per sample
  std::vector<int> arena_of_;          // buffer id -> arena
  std::vector<int64_t> arena_bytes_;   // per arena: bytes per sample
  std::vector<StepPtr> steps_;
  int output_ = -1;                    // engine value of the output (f32 plain)
  int64_t capacity_ = 0;               // batch the arenas hold
  int64_t last_batch_ = 0;
  int64_t tile_ = 0;
  bool has_float_steps_ = false;       // module forwards are not run concurrently
  std::vector<RunContext> ctxs_;       // one per concurrent tile; ctxs_[0] for whole batches
  std::vector<std::vector<Tensor>> arenas_;
};

}  // namespace qslim::quant
