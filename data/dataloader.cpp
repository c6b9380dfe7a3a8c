#include "data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <map>
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

// One pass over the data. Worker threads claim batch indices in order and build them in parallel; the
// consumer takes them in order from the finished slots. A worker claims batch b only while
// b < consumed + window, which bounds the batches ready or in preparation. Without workers
// (prefetch 0) the consumer builds each batch itself.
class EpochRun {
 public:
  EpochRun(std::shared_ptr<const Dataset> ds, const DataLoaderOptions& opts, std::vector<int64_t> order,
           int64_t num_batches, int64_t epoch, std::shared_ptr<BufferPool> pool)
      : ds_(std::move(ds)),
        opts_(opts),
        order_(std::move(order)),
        num_batches_(num_batches),
        epoch_(epoch),
        window_(std::max(opts.prefetch, opts.workers)),
        pool_(std::move(pool)) {
    try {
      if (opts_.prefetch > 0)
        for (int64_t i = 0; i < std::min<int64_t>(opts_.workers, num_batches_); ++i)
          workers_.emplace_back([this] { work(); });
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
    if (workers_.empty()) {
      try {
        current_ = make_batch(consumed_);
      } catch (...) {
        done_ = true;
        throw;
      }
      ++consumed_;
      return;
    }
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return slots_.count(consumed_) > 0; });
      auto it = slots_.find(consumed_);
      item = std::move(it->second);
      slots_.erase(it);
      ++consumed_;
    }
    space_.notify_all();
    if (item.error) {
      done_ = true;
      std::rethrow_exception(item.error);
    }
    current_ = std::move(item.batch);
  }

 private:
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    space_.notify_all();
    for (std::thread& w : workers_)
      if (w.joinable()) w.join();
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
    if (opts_.transform) {
      Generator gen(DataLoader::augmentation_seed(opts_.seed, epoch_, b));
      batch.images = (*opts_.transform)(batch.images, gen);
    }
    return batch;
  }

  void work() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lock(mu_);
        space_.wait(lock, [this] { return stop_ || failed_ || next_ >= num_batches_ || next_ < consumed_ + window_; });
        if (stop_ || failed_ || next_ >= num_batches_) return;
        b = next_++;
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
        failed_ = failed_ || failed;  // stop claiming; batches before b are claimed and still arrive
        slots_.emplace(b, std::move(item));
      }
      ready_.notify_one();
      if (failed) {
        space_.notify_all();
        return;
      }
    }
  }

  std::shared_ptr<const Dataset> ds_;
  DataLoaderOptions opts_;
  std::vector<int64_t> order_;
  int64_t num_batches_;
  int64_t epoch_;
  int64_t window_;
  std::shared_ptr<BufferPool> pool_;

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable space_, ready_;
  std::map<int64_t, Item> slots_;  // finished batches not yet taken, by batch index
  int64_t next_ = 0;               // next batch index to claim
  int64_t consumed_ = 0;           // batches taken by the consumer (guarded by mu_ while workers run)
  bool stop_ = false, failed_ = false;

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
  QSLIM_CHECK(opts_.workers >= 1 && opts_.workers <= 64, "DataLoader: workers must be in [1, 64], got ",
              opts_.workers);
  // Batches ahead + the batch in the consumer's hands + the one it just released.
  pool_ = std::make_shared<detail::BufferPool>(static_cast<size_t>(std::max(opts_.prefetch, opts_.workers)) + 2);
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

uint64_t DataLoader::augmentation_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  return splitmix64(splitmix64(splitmix64(seed) + static_cast<uint64_t>(epoch)) + static_cast<uint64_t>(batch));
}

DataLoader::Iterator DataLoader::begin() {
  const int64_t epoch = epoch_++;
  return Iterator(std::make_shared<detail::EpochRun>(dataset_, opts_, indices(epoch), size(), epoch, pool_));
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
