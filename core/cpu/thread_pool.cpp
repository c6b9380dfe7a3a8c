#include "core/cpu/thread_pool.h"

#include <linux/futex.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace qslim::cpu {
namespace {

thread_local bool tl_in_task = false;

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins while `busy()` for up to `limit`, returning early once it is false. Returns busy().
template <typename F>
bool spin_while(F busy, std::chrono::microseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (busy()) {
    for (int i = 0; i < 64; ++i) cpu_relax();
    if (std::chrono::steady_clock::now() > until) return busy();
  }
  return false;
}

// How long idle threads spin before sleeping: long enough to bridge the gap between two
// consecutive kernels of a training step, short enough not to steal a loaded machine's cores.
constexpr std::chrono::microseconds kWorkerSpin{50};
constexpr std::chrono::microseconds kCallerSpin{50};

// The job word: epoch (28 bits) | task count (18 bits) | next unclaimed task (18 bits). Claiming a
// task is one compare-exchange that also checks the job is still the one the claimer saw.
constexpr int kIndexBits = 18;
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
constexpr uint64_t kEpochMask = (uint64_t{1} << (64 - 2 * kIndexBits)) - 1;
constexpr int64_t kMaxTasks = static_cast<int64_t>(kIndexMask);

uint64_t pack(uint64_t epoch, uint64_t ntasks, uint64_t next) {
  return (epoch << (2 * kIndexBits)) | (ntasks << kIndexBits) | next;
}
uint64_t epoch_of(uint64_t s) { return s >> (2 * kIndexBits); }
uint64_t ntasks_of(uint64_t s) { return (s >> kIndexBits) & kIndexMask; }
uint64_t next_of(uint64_t s) { return s & kIndexMask; }

class Pool {
 public:
  // Runs the job on this thread and the workers; see run_tasks.
  void run(int64_t ntasks, const FunctionRef<void(int64_t)>& task, int64_t threads) {
    ensure_workers(threads - 1);
    active_workers_.store(threads - 1, std::memory_order_relaxed);
    job_.store(&task, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    epoch_ = (epoch_ + 1) & kEpochMask;
    state_.store(pack(epoch_, ntasks, 0), std::memory_order_release);
    wake_epoch_.store(static_cast<uint32_t>(epoch_), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(&wake_epoch_, INT_MAX);

    tl_in_task = true;
    work(epoch_);
    tl_in_task = false;

    const uint32_t n = static_cast<uint32_t>(ntasks);
    if (spin_while([&] { return done_.load(std::memory_order_acquire) < n; }, kCallerSpin)) {
      caller_sleeping_.store(1, std::memory_order_seq_cst);
      uint32_t d;
      while ((d = done_.load(std::memory_order_seq_cst)) < n) futex_wait(&done_, d);
      caller_sleeping_.store(0, std::memory_order_relaxed);
    }
    if (error_) std::rethrow_exception(error_);
  }

  std::mutex& mutex() { return run_mu_; }

 private:
  // Claims and runs tasks of job `epoch` until none is left (or a newer job replaced it).
  void work(uint64_t epoch) {
    const FunctionRef<void(int64_t)>* task = job_.load(std::memory_order_relaxed);
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (epoch_of(s) != epoch || next_of(s) >= ntasks_of(s)) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const uint64_t n = ntasks_of(s);
      try {
        (*task)(static_cast<int64_t>(next_of(s)));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n && caller_sleeping_.load(std::memory_order_seq_cst))
        futex_wake(&done_, 1);
      s = state_.load(std::memory_order_acquire);
    }
  }

  void worker_loop(int64_t id) {
    tl_in_task = true;  // kernels called from a task run inline
    uint32_t seen = wake_epoch_.load(std::memory_order_acquire);
    for (;;) {
      auto unchanged = [&] { return wake_epoch_.load(std::memory_order_acquire) == seen; };
      while (spin_while(unchanged, kWorkerSpin)) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (wake_epoch_.load(std::memory_order_seq_cst) == seen) futex_wait(&wake_epoch_, seen);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = wake_epoch_.load(std::memory_order_acquire);
      if (id < active_workers_.load(std::memory_order_relaxed)) work(seen);
    }
  }

  void ensure_workers(int64_t n) {
    while (static_cast<int64_t>(workers_) < n) {
      const int64_t id = static_cast<int64_t>(workers_++);
      std::thread([this, id] { worker_loop(id); }).detach();
    }
  }

  std::mutex run_mu_;  // one job at a time; other callers run inline
  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> wake_epoch_{0};  // futex word of sleeping workers
  std::atomic<uint32_t> done_{0};        // tasks finished; futex word of a sleeping caller
  std::atomic<uint32_t> caller_sleeping_{0};
  std::atomic<int32_t> sleepers_{0};
  std::atomic<int64_t> active_workers_{0};
  std::atomic<const FunctionRef<void(int64_t)>*> job_{nullptr};
  uint64_t epoch_ = 0;
  size_t workers_ = 0;
  std::mutex error_mu_;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: detached workers outlive static destruction
  return *p;
}

void run_inline(int64_t ntasks, const FunctionRef<void(int64_t)>& task) {
  for (int64_t i = 0; i < ntasks; ++i) task(i);
}

}  // namespace

int64_t pool_threads() { return num_threads(); }

bool in_parallel() { return tl_in_task || omp_in_parallel(); }

void run_tasks(int64_t ntasks, FunctionRef<void(int64_t)> task) {
  QSLIM_CHECK(ntasks <= kMaxTasks, "run_tasks: ", ntasks, " tasks exceed the pool's limit of ", kMaxTasks);
  const int64_t threads = std::min(pool_threads(), ntasks);
  if (threads <= 1 || in_parallel()) return run_inline(ntasks, task);
  Pool& p = pool();
  std::unique_lock<std::mutex> lock(p.mutex(), std::try_to_lock);
  if (!lock.owns_lock()) return run_inline(ntasks, task);  // another thread's job is running
  p.run(ntasks, task, threads);
}

void parallel_range(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  const int64_t threads = pool_threads();
  grain = std::max<int64_t>(grain, 1);
  if (threads <= 1 || n < 2 * grain || in_parallel()) return fn(0, n);
  const int64_t chunks = std::min(n / grain, 4 * threads);
  run_tasks(chunks, [&](int64_t c) { fn(n * c / chunks, n * (c + 1) / chunks); });
}

}  // namespace qslim::cpu
