#include "core/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "core/error.h"

namespace qslim {
namespace {

// Small blocks are rounded to 64 bytes, large ones to 1/8 of their power of two, so that buffers of
// slightly different sizes (last batch of an epoch) still share buckets without wasting much.
size_t bucket_size(size_t n) {
  if (n <= 4096) return (n + 63) & ~size_t(63);
  size_t p = 4096;
  while (p < n) p <<= 1;
  size_t step = p >> 3;
  return (n + step - 1) / step * step;
}

constexpr uint64_t kMaxCachedBytes = uint64_t(2) << 30;

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_lists;
  AllocatorStats stats;
};

Cache& cache() {
  static Cache* c = new Cache();  // leaked on purpose: storages may be freed during static destruction
  return *c;
}

}  // namespace

void* cpu_alloc(size_t nbytes) {
  size_t b = bucket_size(nbytes == 0 ? 1 : nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.allocs++;
    c.stats.bytes_in_use += b;
    auto it = c.free_lists.find(b);
    if (it != c.free_lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cache_hits++;
      c.stats.bytes_cached -= b;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, b);
  if (!p) {
    cpu_empty_cache();
    p = std::aligned_alloc(64, b);
  }
  QSLIM_CHECK(p != nullptr, "cpu_alloc: out of memory allocating ", nbytes, " bytes");
  return p;
}

void cpu_free(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t b = bucket_size(nbytes == 0 ? 1 : nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.bytes_in_use -= b;
  if (c.stats.bytes_cached + b > kMaxCachedBytes) {
    std::free(ptr);
    return;
  }
  c.free_lists[b].push_back(ptr);
  c.stats.bytes_cached += b;
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, list] : c.free_lists)
    for (void* p : list) std::free(p);
  c.free_lists.clear();
  c.stats.bytes_cached = 0;
}

AllocatorStats cpu_allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

}  // namespace qslim
