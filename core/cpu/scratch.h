// Internal: per-thread scratch buffers reused across calls (im2col columns, padded planes), so a
// training step does not allocate them anew each time. The pointer for a slot stays valid until
// the same thread asks for that slot again.
#pragma once
#include <cstddef>
#include <vector>

namespace qslim::cpu {

enum class ScratchSlot : int {
  Columns,
  GradColumns,
  Plane,
  GradPlane,
  PackedWeights,
  FlippedWeights,
  Row,
  Count
};

template <typename T>
T* thread_scratch(ScratchSlot slot, size_t n) {
  thread_local std::vector<T> buffers[static_cast<int>(ScratchSlot::Count)];
  std::vector<T>& b = buffers[static_cast<int>(slot)];
  if (b.size() < n) {
    b.clear();
    b.shrink_to_fit();
    b.resize(n);
  }
  return b.data();
}

}  // namespace qslim::cpu
