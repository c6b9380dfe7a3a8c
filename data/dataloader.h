// Batches over a Dataset: optional shuffling with a per-epoch seed, drop_last, batch transforms, and
// background prefetch on worker threads with a bounded queue.
//
//   DataLoader loader(dataset, {.batch_size = 128, .shuffle = true, .seed = 1, .transform = aug, .workers = 2});
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (Batch& b : loader) train_step(b.images, b.labels);
//
// Epoch e shuffles with Generator(seed + e); batch b of epoch e is augmented with
// Generator(augmentation_seed(seed, e, b)). Batches are delivered in order, so a run is reproducible
// and the batches (order and content) are the same whatever the worker count and prefetch depth. Each
// begin() starts the next epoch (set_epoch to choose one, e.g. when resuming). Batch buffers are
// recycled once the consumer has moved past a batch and holds no handle or view of it. Leaving a loop
// early stops the workers cleanly; an exception thrown while loading is rethrown by the iterator in
// the consumer when it reaches that batch (the first failing batch in order).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace qslim::data {

struct DataLoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  TransformPtr transform = nullptr;  // applied to each batch's images; may be null; must be thread-safe
  // Batches ready or in preparation ahead of the consumer: at most max(prefetch, workers). 0 loads
  // each batch in the consumer thread (no worker threads).
  int prefetch = 2;
  // Threads building batches in parallel (each a whole batch: dataset get_batch and transform).
  int workers = 1;
};

namespace detail {
class EpochRun;
class BufferPool;
}  // namespace detail

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  ~DataLoader();

  int64_t size() const;  // batches per epoch
  const DataLoaderOptions& options() const { return opts_; }
  const Dataset& dataset() const { return *dataset_; }

  // The example order of `epoch`: 0..N-1, or a permutation drawn from Generator(seed + epoch).
  std::vector<int64_t> indices(int64_t epoch) const;
  // Seed of the generator that augments batch `batch` of `epoch`.
  static uint64_t augmentation_seed(uint64_t seed, int64_t epoch, int64_t batch);
  int64_t next_epoch() const { return epoch_; }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }

  class Iterator {
   public:
    Iterator() = default;
    Batch& operator*() const;
    Batch* operator->() const { return &**this; }
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return at_end() == other.at_end(); }
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<detail::EpochRun> run) : run_(std::move(run)) {}
    bool at_end() const;
    std::shared_ptr<detail::EpochRun> run_;
  };

  Iterator begin();  // starts epoch next_epoch() and advances the counter
  Iterator end() { return Iterator(); }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions opts_;
  int64_t epoch_ = 0;
  std::shared_ptr<detail::BufferPool> pool_;
};

}  // namespace qslim::data
