// Internal: whether a backward may overwrite an incoming gradient instead of allocating its result.
// The engine hands each node its gradients and keeps no other handle, so a gradient whose handle
// and storage have no other owner (no view, no saved alias, no second consumer, not the caller's
// seed) is a scratch buffer. Writing into it saves an allocation and the write-allocate traffic of a
// fresh output.
#pragma once
#include "core/tensor.h"

namespace qslim {

inline bool exclusively_owned(const Tensor& g) {
  return g.defined() && g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1 && g.is_contiguous() &&
         !g.requires_grad();
}

}  // namespace qslim
