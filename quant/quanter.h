// Quanter: a module that fake-quantizes the tensor it is given (a weight or an activation) and
// can report the frozen quantization for convert.
//
// Contract for every quanter:
//  - forward(x) returns the fake-quantized x, differentiable. In training mode it updates its
//    statistics first (the step used is the updated one, as PaddleSlim does); in eval mode the
//    statistics-based quanters use their frozen step.
//  - All state lives in parameters and buffers, so state_dict() checkpoints it exactly. For the
//    abs-max family a "scale" buffer holding 0 means "no statistics yet"; the LSQ quanters keep an
//    "initialized" buffer instead (their steps are parameters the optimizer moves).
//  - quant_params() returns copies of the frozen values (step sizes, zero points, axis, grid,
//    rounding) and throws when there are no statistics yet. Quanters that follow the current
//    tensor (abs_max, channel_wise_abs_max) record the step of their last forward: convert should
//    run one forward on the final weight (eval mode, NoGradGuard) before reading quant_params().
//  - threshold() is PaddleSlim's T (the clipping abs-max) for reports: max over channels of
//    step * qmax.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "nn/module.h"
#include "quant/quant_grid.h"
#include "quant/quant_params.h"

namespace qslim::quant {

// What a quanter quantizes; decides the default grid.
enum class QuantRole : uint8_t { Weight, Activation };
const char* quant_role_name(QuantRole r);  // "weight", "activation"

// Options every quanter takes (concrete quanters extend this struct).
struct QuantOptions {
  int bits = 8;
  QuantRole role = QuantRole::Activation;
  std::optional<GridKind> grid;  // unset: Narrow for weights, Signed for activations
  Rounding rounding = Rounding::HalfEven;
  SteMode ste = SteMode::Clipped;

  GridKind resolved_grid_kind() const;
  QuantGrid resolved_grid() const;  // validates bits
};

class Quanter : public nn::Module {
 public:
  explicit Quanter(const QuantOptions& options);

  using nn::Module::forward;
  Tensor forward(const Tensor& x) override = 0;

  virtual QuantParams quant_params() const = 0;
  virtual double threshold() const;

  int bits() const { return grid_.bits(); }
  const QuantGrid& grid() const { return grid_; }
  Rounding rounding() const { return options_.rounding; }
  SteMode ste() const { return options_.ste; }
  QuantRole role() const { return options_.role; }
  const QuantOptions& options() const { return options_; }
  std::string extra_repr() const override;  // "bits=8, grid=narrow, rounding=half_even, ste=clipped"

 protected:
  // fake_quantize(x) with this quanter's grid, rounding and STE; scale f32 [1] or [C].
  Tensor fake_quant(const Tensor& x, const Tensor& scale, int64_t axis) const;
  // Frozen per-tensor or per-channel symmetric params built from a step buffer (copied). Throws,
  // naming this quanter, when the buffer still holds 0 (no statistics yet).
  QuantParams symmetric_params(const Tensor& scale, int64_t axis) const;

 private:
  QuantOptions options_;
  QuantGrid grid_;
};

using QuanterPtr = std::shared_ptr<Quanter>;

}  // namespace qslim::quant
