#include "nn/embedding.h"

#include "autograd/grad_mode.h"
#include "autograd/ops_norm.h"
#include "core/factory.h"
#include "nn/init.h"

namespace qslim::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx)
    : num_(num_embeddings), dim_(embedding_dim), padding_idx_(padding_idx) {
  QSLIM_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: sizes must be positive, got num_embeddings=",
              num_embeddings, ", embedding_dim=", embedding_dim);
  QSLIM_CHECK(padding_idx >= -1 && padding_idx < num_embeddings, "Embedding: padding_idx ", padding_idx,
              " out of range for ", num_embeddings, " embeddings (use -1 for none)");
  register_parameter("weight", empty({num_embeddings, embedding_dim}));
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight());
  NoGradGuard no_grad;
  if (padding_idx_ >= 0) weight().select(0, padding_idx_).detach().fill_(0.0);
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight(), indices, padding_idx_); }

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(num_) + ", " + std::to_string(dim_);
  if (padding_idx_ >= 0) s += ", padding_idx=" + std::to_string(padding_idx_);
  return s;
}

}  // namespace qslim::nn
