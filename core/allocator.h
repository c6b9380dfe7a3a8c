// Caching CPU allocator: freed blocks are kept in size buckets and handed out again, so a training
// step reuses its large buffers instead of calling malloc/free each time.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qslim {

struct AllocatorStats {
  uint64_t allocs = 0;       // requests served
  uint64_t cache_hits = 0;   // requests served from the cache
  uint64_t bytes_cached = 0; // bytes held in free lists now
  uint64_t bytes_in_use = 0; // bytes handed out now
};

void* cpu_alloc(size_t nbytes);       // 64-byte aligned; never returns null (throws on failure)
void cpu_free(void* ptr, size_t nbytes);
void cpu_empty_cache();
AllocatorStats cpu_allocator_stats();

}  // namespace qslim
