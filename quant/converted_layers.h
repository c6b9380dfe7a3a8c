// Converted layers: what convert() leaves in place of the QAT wrappers (QUANT_SPEC.md §8).
// Weights are integers (i8 up to 8 bits, i16 up to 16, see QuantGrid::storage_dtype) with f32
// step sizes per output channel (or one per tensor); every quantized activation keeps a frozen
// step and zero point. forward() runs the simulated float path: quantize the input with the
// frozen step, dequantize the weight, float conv / matmul, float bias. It equals the QAT model's
// eval forward bit for bit, since dequantize(quantize(x)) == fake_quantize(x).
//
// All state is in buffers (no parameters), so state_dict() holds the integer tensors:
//   ConvertedConv2D / ConvertedLinear: weight (integer), weight_scale (f32 [C] or [1]),
//     input_scale (f32 [1]), input_zero_point (i32 [1]), bias (f32 [out], when present)
//   ConvertedOp: <point>_scale / <point>_zero_point per quantization point ("input", or
//     "input_0", "input_1", ... for several inputs, or "output"),
//     plus the wrapped weight-less op as child "op".
// Constructors build zeroed tensors of the right shapes and dtypes (filled by the setters, or by
// load_state_dict when loading a converted file).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "quant/quant_params.h"

namespace qslim::quant {

// Where a weight-less op is quantized: each input (Add, pooling, activations) or the output
// (Concat: one step for all inputs, so the integer concat is exact).
enum class OpQuantPoint : uint8_t { Inputs, Output };
const char* op_quant_point_name(OpQuantPoint p);  // "inputs", "output"

// Grid and rounding of one frozen activation quantization.
struct ActQuantSpec {
  QuantGrid grid;
  Rounding rounding = Rounding::HalfEven;
};

class ConvertedLayer : public nn::Module {
 public:
  struct Record {
    std::string tensor;  // "weight", "input", "input_0", "output", ...
    QuantParams params;
  };
  // Every quantization this layer holds, weight first.
  virtual std::vector<Record> quant_records() const = 0;
  // The quant type it was converted from ("Conv2D", "DepthwiseConv2D", "Linear", "Add", ...).
  const std::string& source_type() const { return source_type_; }

 protected:
  explicit ConvertedLayer(std::string source_type) : source_type_(std::move(source_type)) {}
  // Buffers "<name>_scale" (f32 [1], 1.0) and "<name>_zero_point" (i32 [1], 0).
  void register_activation(const std::string& name);
  void set_activation(const std::string& name, const ActQuantSpec& spec, const QuantParams& p);
  QuantParams activation_params(const std::string& name, const ActQuantSpec& spec) const;
  Tensor quantize_activation(const Tensor& x, const std::string& name, const ActQuantSpec& spec) const;

 private:
  std::string source_type_;
};

// An integer weight (i8 or i16, see QuantGrid::storage_dtype) with f32 steps per output channel
// (axis 0) or per tensor (-1) on a symmetric grid, an optional f32 bias, and the dequantized
// weight cache: what the converted (ConvertedWeightLayer) and weight-only (DynamicWeightLayer,
// quant/dynamic_layers.h) layers share. Buffers: weight, weight_scale, bias (when present).
class IntegerWeightLayer : public ConvertedLayer {
 public:
  void set_bias(const Tensor& bias);  // f32 [out]; the layer must have been built with a bias
  QuantParams weight_params() const;
  const QuantGrid& weight_grid() const { return weight_grid_; }
  int64_t weight_axis() const { return weight_axis_; }
  bool has_bias() const { return has_buffer("bias"); }
  // The f32 weight the forward uses, (q - 0) * s; cached until the integer weight or steps change.
  Tensor dequantized_weight() const;

 protected:
  // kind names the family in errors ("Converted", "Dynamic"); weight_grid must be symmetric.
  IntegerWeightLayer(const std::string& kind, std::string source_type, const Shape& weight_shape,
                     const QuantGrid& weight_grid, int64_t weight_axis, bool has_bias);
  Tensor bias_or_undefined() const { return has_bias() ? buffer("bias") : Tensor(); }

 private:
  QuantGrid weight_grid_;
  int64_t weight_axis_;
  mutable Tensor cache_;
  mutable const void* cache_key_[2] = {nullptr, nullptr};
  mutable uint64_t cache_version_[2] = {0, 0};
};

// Shared by ConvertedConv2D and ConvertedLinear: integer weight, steps, input quantization, bias.
class ConvertedWeightLayer : public IntegerWeightLayer {
 public:
  // Quantizes the float weight with wp (grid and axis as built, symmetric) and stores the integers.
  void set_weight(const Tensor& float_weight, const QuantParams& wp);
  void set_input(const QuantParams& ip);

  QuantParams input_params() const;
  const ActQuantSpec& input_spec() const { return input_; }
  // Leaf name of the sibling BatchNorm2D folded into this layer (now an Identity), or "".
  const std::string& folded_bn() const { return folded_bn_; }
  void set_folded_bn(const std::string& sibling) { folded_bn_ = sibling; }
  std::vector<Record> quant_records() const override;
  std::string extra_repr() const override;

 protected:
  // weight_axis 0 (per output channel) or -1 (per tensor); weight_grid symmetric (narrow or signed).
  ConvertedWeightLayer(std::string source_type, const Shape& weight_shape, const QuantGrid& weight_grid,
                       int64_t weight_axis, const ActQuantSpec& input, bool has_bias);
  Tensor quantize_input(const Tensor& x) const { return quantize_activation(x, "input", input_); }

 private:
  ActQuantSpec input_;
  std::string folded_bn_;
};

class ConvertedConv2D : public ConvertedWeightLayer {
 public:
  // Geometry (channels, kernel, stride, padding, dilation, groups) from `geometry`.
  ConvertedConv2D(const nn::Conv2D& geometry, const std::string& source_type, const QuantGrid& weight_grid,
                  int64_t weight_axis, const ActQuantSpec& input, bool has_bias);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ConvertedConv2D"; }
  const Conv2dParams& conv_params() const { return p_; }
  int64_t in_channels() const { return in_; }

 private:
  int64_t in_;
  Conv2dParams p_;
};

class ConvertedLinear : public ConvertedWeightLayer {
 public:
  ConvertedLinear(int64_t in_features, int64_t out_features, const QuantGrid& weight_grid, int64_t weight_axis,
                  const ActQuantSpec& input, bool has_bias);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ConvertedLinear"; }
  int64_t in_features() const { return in_; }

 private:
  int64_t in_;
};

class ConvertedOp : public ConvertedLayer {
 public:
  // One spec per quantization point: per input for Inputs (1 for unary ops, 2 for Add), one for Output.
  ConvertedOp(nn::ModulePtr op, const std::string& source_type, OpQuantPoint point, std::vector<ActQuantSpec> specs);
  using nn::Module::forward;
  Tensor forward(const Tensor& x) override;
  Tensor forward(const std::vector<Tensor>& xs) override;
  std::string type_name() const override { return "ConvertedOp"; }
  std::string extra_repr() const override;

  void set_point(size_t i, const QuantParams& p);
  QuantParams point_params(size_t i) const;
  size_t num_points() const { return specs_.size(); }
  OpQuantPoint point() const { return point_; }
  const ActQuantSpec& spec(size_t i) const { return specs_.at(i); }
  // "input", "input_0", "output": the buffer prefix and record name of point i.
  std::string point_name(size_t i) const;
  std::vector<Record> quant_records() const override;

 private:
  OpQuantPoint point_;
  std::vector<ActQuantSpec> specs_;
};

}  // namespace qslim::quant
