// Embedding quantization (QUANT_SPEC.md §6, PaddleSlim's quant_embedding with abs_max).
//
// The table E [num, dim] is first clipped to [-T, T]: T = `threshold` when given, else the 99.99th
// percentile of |E| (numpy's linear interpolation) when max|E| >= 1, else no clipping (as
// PaddleSlim). It is then stored as integers on the narrow grid of `bits` (8 or 16) with step
// sizes s = max|E_clipped| / (2^(b-1)-1), one per row (default: a row of small vectors keeps its
// own resolution) or one for the whole table (PaddleSlim's). Rounding is half-to-even (numpy's).
//
// QuantEmbedding's forward gathers the looked-up rows and dequantizes only those (q[row] * s);
// the float table is never rebuilt. Its state is all buffers:
//   weight (i8 or i16 [num, dim]), weight_scale (f32 [num] per row, or [1] per table)
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "nn/embedding.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

class QuantEmbedding : public ConvertedLayer {
 public:
  // bits 8 or 16; per_row: one step per row (axis 0), else one per table (axis -1).
  QuantEmbedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx, int bits, bool per_row);
  // Clips `table` ([num, dim], floating) to clip_threshold (when set) and quantizes it.
  void quantize_table(const Tensor& table, std::optional<double> clip_threshold);

  using nn::Module::forward;
  // indices i64 or i32 of any shape -> f32 [..., dim].
  Tensor forward(const Tensor& indices) override;
  std::string type_name() const override { return "QuantEmbedding"; }
  std::string extra_repr() const override;
  std::vector<Record> quant_records() const override;

  int64_t num_embeddings() const { return num_; }
  int64_t embedding_dim() const { return dim_; }
  int64_t padding_idx() const { return padding_idx_; }
  bool per_row() const { return per_row_; }
  const QuantGrid& grid() const { return grid_; }
  QuantParams weight_params() const;
  // The clip applied before quantizing (recorded in saved files), or none.
  std::optional<double> clip_threshold() const { return clip_; }
  void set_clip_threshold(std::optional<double> t) { clip_ = t; }
  // The whole dequantized table, f32 [num, dim] (for the float test model and checks; forward never builds it).
  Tensor dequantized_table() const;

 private:
  int64_t num_, dim_, padding_idx_;
  bool per_row_;
  QuantGrid grid_;
  std::optional<double> clip_;
};

struct EmbeddingQuantOptions {
  int bits = 8;                     // 8 | 16
  std::optional<double> threshold;  // clip to [-threshold, threshold]; unset: the percentile rule above
  bool per_row = true;              // false: one step per table (PaddleSlim parity)
  std::vector<std::string> not_quant_pattern{"skip_quant"};

  void validate() const;  // throws naming the bad option
};

// The clip PaddleSlim's rule picks for `table`: `threshold` when given (> 0), else the 99.99th
// percentile of |E| when max|E| >= 1, else unset.
std::optional<double> embedding_clip_threshold(const Tensor& table, std::optional<double> threshold);
// numpy.percentile(|x|, pct) with linear interpolation, pct in [0, 100].
double abs_percentile(const Tensor& x, double pct);

struct QuantizedEmbedding {
  std::string name;
  std::optional<double> clip_threshold;
};

// Replaces every Embedding of `model` (not skipped by not_quant_pattern) by a QuantEmbedding, in
// place. Throws when the model has none to quantize (naming the skipped ones) or is already quantized.
std::vector<QuantizedEmbedding> quant_embedding(nn::Module& model, const EmbeddingQuantOptions& options = {});

}  // namespace qslim::quant
