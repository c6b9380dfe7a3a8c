// Lookup table: weight [num_embeddings, embedding_dim]; forward maps i64 indices [...] to [..., dim].
#pragma once
#include "nn/module.h"

namespace qslim::nn {

class Embedding : public Module {
 public:
  // weight ~ N(0, 1) as in PyTorch; the padding_idx row (if >= 0) starts at zero and gets no gradient.
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1);
  using Module::forward;
  Tensor forward(const Tensor& indices) override;
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;

  int64_t num_embeddings() const { return num_; }
  int64_t embedding_dim() const { return dim_; }
  int64_t padding_idx() const { return padding_idx_; }
  Tensor weight() const { return param("weight"); }
  void reset_parameters();

 private:
  int64_t num_, dim_, padding_idx_;
};

}  // namespace qslim::nn
