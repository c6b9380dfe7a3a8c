#include "data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "core/factory.h"

namespace qslim::data {

namespace detail {

// Batches the consumer has moved past; handed back to the producer when nothing else holds them.
class BufferPool {
 public:
  explicit BufferPool(size_t capacity) : capacity_(capacity) {}

  Batch acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < free_.size(); ++i)
      if (exclusive(free_[i].images) && exclusive(free_[i].labels)) {
        Batch b = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        return b;
      }
    return {};
  }

  void release(Batch&& b) {
    if (!b.images.defined()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() >= capacity_) free_.erase(free_.begin());
    free_.push_back(std::move(b));
  }

 private:
  static bool exclusive(const Tensor& t) {
    return t.defined() && t.impl_ptr().use_count() == 1 && t.impl().storage.use_count() == 1;
  }
  std::mutex mu_;
  std::vector<Batch> free_;
  size_t capacity_;
};

// One pass over the data: the producer (a worker thread, or the consumer itself when prefetch is 0)
// builds batches in order; the consumer takes them from a bounded queue.
class EpochRun {
 public:
  EpochRun(std::shared_ptr<const Dataset> ds, const DataLoaderOptions& opts, std::vector<int64_t> order,
           int64_t num_batches, uint64_t aug_seed, std::shared_ptr<BufferPool> pool)
      : ds_(std::move(ds)),
        opts_(opts),
        order_(std::move(order)),
        num_batches_(num_batches),
        aug_(aug_seed),
        pool_(std::move(pool)) {
    if (opts_.prefetch > 0 && num_batches_ > 0) worker_ = std::thread([this] { produce_all(); });
    try {
      advance();
    } catch (...) {
      shutdown();  // the destructor does not run when the constructor throws
      throw;
    }
  }

  ~EpochRun() { shutdown(); }

  bool done() const { return done_; }
  Batch& current() {
    QSLIM_CHECK(!done_, "DataLoader: dereferencing an iterator past the last batch");
    return current_;
  }

  void advance() {
    if (done_) return;
    pool_->release(std::move(current_));
    current_ = Batch();
    if (consumed_ == num_batches_) {
      done_ = true;
      return;
    }
    if (!worker_.joinable()) {
      try {
        current_ = make_batch(consumed_);
      } catch (...) {
        done_ = true;
        throw;
      }
    } else {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return !queue_.empty(); });
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      space_.notify_one();
      if (item.error) {
        done_ = true;
        std::rethrow_exception(item.error);
      }
      current_ = std::move(item.batch);
    }
    ++consumed_;
  }

 private:
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    space_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  struct Item {
    Batch batch;
    std::exception_ptr error;
  };

  Batch make_batch(int64_t b) {
    const int64_t bs = opts_.batch_size, n = static_cast<int64_t>(order_.size());
    const int64_t begin = b * bs, end = std::min(begin + bs, n);
    std::vector<int64_t> idx(order_.begin() + begin, order_.begin() + end);
    Batch batch = pool_->acquire();
    ds_->get_batch(idx, batch);
    if (opts_.transform) batch.images = (*opts_.transform)(batch.images, aug_);
    return batch;
  }

  void produce_all() {
    for (int64_t b = 0; b < num_batches_; ++b) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        space_.wait(lock, [this] { return stop_ || static_cast<int>(queue_.size()) < opts_.prefetch; });
        if (stop_) return;
      }
      Item item;
      try {
        item.batch = make_batch(b);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = item.error != nullptr;
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(item));
      }
      ready_.notify_one();
      if (failed) return;
    }
  }

  std::shared_ptr<const Dataset> ds_;
  DataLoaderOptions opts_;
  std::vector<int64_t> order_;
  int64_t num_batches_;
  Generator aug_;
  std::shared_ptr<BufferPool> pool_;

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable space_, ready_;
  std::deque<Item> queue_;
  bool stop_ = false;

  int64_t consumed_ = 0;
  bool done_ = false;
  Batch current_;
};

}  // namespace detail

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), opts_(std::move(options)) {
  QSLIM_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
  QSLIM_CHECK(opts_.batch_size > 0, "DataLoader: batch_size must be > 0, got ", opts_.batch_size);
  QSLIM_CHECK(opts_.prefetch >= 0 && opts_.prefetch <= 64, "DataLoader: prefetch must be in [0, 64], got ",
              opts_.prefetch);
  // Queue depth + the batch in the consumer's hands + the one being built.
  pool_ = std::make_shared<detail::BufferPool>(static_cast<size_t>(opts_.prefetch) + 2);
}

DataLoader::~DataLoader() = default;

int64_t DataLoader::size() const {
  const int64_t n = dataset_->size(), bs = opts_.batch_size;
  return opts_.drop_last ? n / bs : (n + bs - 1) / bs;
}

std::vector<int64_t> DataLoader::indices(int64_t epoch) const {
  const int64_t n = dataset_->size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  if (opts_.shuffle) {
    Generator gen(opts_.seed + static_cast<uint64_t>(epoch));
    Tensor perm = randperm(n, &gen);
    const int64_t* p = perm.data<int64_t>();
    std::copy(p, p + n, order.begin());
  } else {
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  }
  return order;
}

DataLoader::Iterator DataLoader::begin() {
  const int64_t epoch = epoch_++;
  const uint64_t aug_seed = splitmix64(opts_.seed + static_cast<uint64_t>(epoch));
  return Iterator(std::make_shared<detail::EpochRun>(dataset_, opts_, indices(epoch), size(), aug_seed, pool_));
}

Batch& DataLoader::Iterator::operator*() const {
  QSLIM_CHECK(run_ != nullptr, "DataLoader: dereferencing the end iterator");
  return run_->current();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  QSLIM_CHECK(run_ != nullptr, "DataLoader: incrementing the end iterator");
  run_->advance();
  return *this;
}

bool DataLoader::Iterator::at_end() const { return !run_ || run_->done(); }

}  // namespace qslim::data
