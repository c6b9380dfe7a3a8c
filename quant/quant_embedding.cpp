#include "quant/quant_embedding.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/factory.h"
#include "core/parallel.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

namespace {

constexpr double kPercentile = 99.99;  // PaddleSlim's default clip when max|E| >= 1

QuantGrid embedding_grid(int bits) {
  QSLIM_CHECK(bits == 8 || bits == 16, "QuantEmbedding: bits must be 8 or 16 (int8 or int16 table), got ", bits);
  return QuantGrid(bits, GridKind::Narrow);
}

// out[i, :] = q[idx[i], :] * s[per_row ? idx[i] : 0] for the k looked-up rows only.
template <typename Q>
void gather_dequantize(const Q* q, const float* s, bool per_row, const int64_t* idx, int64_t k, int64_t dim,
                       float* out) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / dim);
  parallel_for(k, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Q* row = q + idx[i] * dim;
      const float step = s[per_row ? idx[i] : 0];
      float* o = out + i * dim;
      for (int64_t j = 0; j < dim; ++j) o[j] = static_cast<float>(row[j]) * step;
    }
  });
}

}  // namespace

// ---------------------------------------------------------------- QuantEmbedding

QuantEmbedding::QuantEmbedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx, int bits,
                               bool per_row)
    : ConvertedLayer("Embedding"),
      num_(num_embeddings),
      dim_(embedding_dim),
      padding_idx_(padding_idx),
      per_row_(per_row),
      grid_(embedding_grid(bits)) {
  QSLIM_CHECK(num_embeddings > 0 && embedding_dim > 0,
              "QuantEmbedding: sizes must be positive, got num_embeddings=", num_embeddings,
              ", embedding_dim=", embedding_dim);
  QSLIM_CHECK(padding_idx >= -1 && padding_idx < num_embeddings, "QuantEmbedding: padding_idx ", padding_idx,
              " out of range for ", num_embeddings, " embeddings (use -1 for none)");
  register_buffer("weight", zeros({num_embeddings, embedding_dim}, grid_.storage_dtype()));
  register_buffer("weight_scale", ones({per_row ? num_embeddings : 1}));
}

void QuantEmbedding::quantize_table(const Tensor& table, std::optional<double> clip_threshold) {
  QSLIM_CHECK(table.shape() == Shape({num_, dim_}), "QuantEmbedding: table ", shape_str(table.shape()),
              " does not match the layer's [", num_, ", ", dim_, "]");
  QSLIM_CHECK(table.is_floating_point(), "QuantEmbedding: expected a floating table, got ", dtype_name(table.dtype()));
  QSLIM_CHECK(!clip_threshold || (std::isfinite(*clip_threshold) && *clip_threshold > 0),
              "QuantEmbedding: the clip threshold must be positive and finite, got ",
              clip_threshold ? *clip_threshold : 0.0);
  Tensor e = table.detach().to(DType::F32).contiguous().clone();
  float* pe = e.data<float>();
  const float t = clip_threshold ? static_cast<float>(*clip_threshold) : 0.f;
  const int64_t rows = per_row_ ? num_ : 1, per = per_row_ ? dim_ : num_ * dim_;
  const double qmax = static_cast<double>(grid_.qmax());
  std::vector<double> scales(rows);
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0;
    for (int64_t i = r * per; i < (r + 1) * per; ++i) {
      QSLIM_CHECK(std::isfinite(pe[i]), "QuantEmbedding: table element ", i, " (row ", i / dim_, ") is ", pe[i],
                  "; only finite tables can be quantized");
      if (clip_threshold) pe[i] = std::clamp(pe[i], -t, t);
      m = std::max(m, std::fabs(pe[i]));
    }
    scales[r] = static_cast<double>(m) / qmax;
  }
  const QuantParams p = per_channel_params(scales, per_row_ ? 0 : -1, grid_);
  buffer("weight").copy_(quantize(e, p));
  buffer("weight_scale").copy_(p.scale);
  clip_ = clip_threshold;
}

QuantParams QuantEmbedding::weight_params() const {
  QuantParams p;
  p.scale = buffer("weight_scale").clone();
  p.zero_point = zeros(p.scale.shape(), DType::I32);
  p.axis = per_row_ ? 0 : -1;
  p.grid = grid_;
  return p;
}

Tensor QuantEmbedding::dequantized_table() const { return dequantize(buffer("weight"), weight_params()); }

Tensor QuantEmbedding::forward(const Tensor& indices) {
  QSLIM_CHECK(indices.dtype() == DType::I64 || indices.dtype() == DType::I32,
              "QuantEmbedding: indices must be i64 (or i32), got ", dtype_name(indices.dtype()));
  const Tensor idx = indices.to(DType::I64).contiguous();
  const int64_t* pi = idx.data<int64_t>();
  const int64_t k = idx.numel();
  for (int64_t i = 0; i < k; ++i)
    QSLIM_CHECK(pi[i] >= 0 && pi[i] < num_, "QuantEmbedding: index ", pi[i], " at position ", i,
                " out of range for a table of ", num_, " rows");
  Shape out_shape = indices.shape();
  out_shape.push_back(dim_);
  Tensor out = Tensor::empty(out_shape, DType::F32);
  const Tensor q = buffer("weight").contiguous(), s = buffer("weight_scale").contiguous();
  QSLIM_CHECK(s.dtype() == DType::F32, "QuantEmbedding: weight_scale must be f32, got ", dtype_name(s.dtype()));
  if (q.dtype() == DType::I8) {
    gather_dequantize(q.data<int8_t>(), s.data<float>(), per_row_, pi, k, dim_, out.data<float>());
  } else {
    gather_dequantize(q.data<int16_t>(), s.data<float>(), per_row_, pi, k, dim_, out.data<float>());
  }
  return out;
}

std::vector<ConvertedLayer::Record> QuantEmbedding::quant_records() const { return {{"weight", weight_params()}}; }

std::string QuantEmbedding::extra_repr() const {
  std::string s = std::to_string(num_) + ", " + std::to_string(dim_);
  if (padding_idx_ >= 0) s += ", padding_idx=" + std::to_string(padding_idx_);
  s += ", " + grid_.to_string() + (per_row_ ? " per row" : " per table");
  if (clip_) s += ", clip=" + std::to_string(*clip_);
  return s;
}

// ---------------------------------------------------------------- quant_embedding

void EmbeddingQuantOptions::validate() const {
  QSLIM_CHECK(bits == 8 || bits == 16, "quant_embedding: bits must be 8 or 16 (int8 or int16 table), got ", bits);
  QSLIM_CHECK(!threshold || (std::isfinite(*threshold) && *threshold > 0),
              "quant_embedding: threshold must be positive and finite, got ", threshold ? *threshold : 0.0);
}

double abs_percentile(const Tensor& x, double pct) {
  QSLIM_CHECK(pct >= 0 && pct <= 100, "abs_percentile: percentile must be in [0, 100], got ", pct);
  QSLIM_CHECK(x.numel() > 0, "abs_percentile: empty tensor");
  std::vector<double> a = x.to_vector<double>();
  for (double& v : a) v = std::fabs(v);
  const double pos = pct / 100.0 * static_cast<double>(a.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, a.size() - 1);
  std::nth_element(a.begin(), a.begin() + lo, a.end());
  const double v_lo = a[lo];
  // The next order statistic is the smallest element above position lo.
  const double v_hi = hi == lo ? v_lo : *std::min_element(a.begin() + lo + 1, a.end());
  return v_lo + (v_hi - v_lo) * (pos - static_cast<double>(lo));
}

std::optional<double> embedding_clip_threshold(const Tensor& table, std::optional<double> threshold) {
  if (threshold) return threshold;
  const std::vector<float> v = table.to_vector<float>();
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  if (m < 1.0f) return std::nullopt;
  return abs_percentile(table, kPercentile);
}

std::vector<QuantizedEmbedding> quant_embedding(nn::Module& model, const EmbeddingQuantOptions& options) {
  options.validate();
  std::vector<std::pair<std::string, std::shared_ptr<nn::Embedding>>> targets;
  std::vector<std::string> skipped, quantized;
  for (const auto& [name, m] : model.named_modules()) {
    if (dynamic_cast<const QuantEmbedding*>(m.get())) quantized.push_back(name);
    auto emb = std::dynamic_pointer_cast<nn::Embedding>(m);
    if (!emb) continue;
    bool skip = false;
    for (const std::string& pat : options.not_quant_pattern)
      skip = skip || (!pat.empty() && name.find(pat) != std::string::npos);
    if (skip) {
      skipped.push_back(name);
    } else {
      QSLIM_CHECK(!name.empty(), "quant_embedding: the model itself is an Embedding; wrap it in a container first");
      targets.emplace_back(name, emb);
    }
  }
  if (targets.empty()) {
    std::string why;
    for (const std::string& s : skipped) why += (why.empty() ? "" : ", ") + s;
    std::string done;
    for (const std::string& s : quantized) done += (done.empty() ? "" : ", ") + s;
    QSLIM_FAIL("quant_embedding: the model has no Embedding to quantize",
               skipped.empty() ? "" : " (skipped by not_quant_pattern: " + why + ")",
               quantized.empty() ? "" : " (already quantized: " + done + ")");
  }
  std::vector<QuantizedEmbedding> out;
  for (const auto& [name, emb] : targets) {
    const Tensor table = emb->weight().detach();
    const std::optional<double> clip = embedding_clip_threshold(table, options.threshold);
    auto q = std::make_shared<QuantEmbedding>(emb->num_embeddings(), emb->embedding_dim(), emb->padding_idx(),
                                              options.bits, options.per_row);
    q->quantize_table(table, clip);
    q->train(emb->is_training());
    model.replace_submodule(name, q);
    out.push_back({name, clip});
  }
  return out;
}

}  // namespace qslim::quant
