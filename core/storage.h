// A reference-counted byte buffer. The version counter is bumped by every in-place write so that
// autograd can detect a saved tensor that was modified before backward.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace qslim {

class Storage {
 public:
  explicit Storage(size_t nbytes);  // uninitialised, from the caching allocator
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_;
  size_t nbytes_;
  std::atomic<uint64_t> version_{0};
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace qslim
