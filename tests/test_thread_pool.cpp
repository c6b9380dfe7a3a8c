// The kernels' thread pool: every task runs exactly once, on any thread count, nested and from
// concurrent callers; exceptions reach the caller; parallel_range covers [0, n) exactly.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/cpu/batch_parallel.h"
#include "core/cpu/thread_pool.h"
#include "core/parallel.h"

namespace {

using qslim::cpu::parallel_range;
using qslim::cpu::run_tasks;

struct ThreadCount {
  explicit ThreadCount(int n) : saved(qslim::num_threads()) { qslim::set_num_threads(n); }
  ~ThreadCount() { qslim::set_num_threads(saved); }
  int saved;
};

TEST(ThreadPool, EveryTaskRunsOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadCount tc(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(n);
        run_tasks(n, [&](int64_t i) { hits[i].fetch_add(1); });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i << " of " << n;
      }
    }
  }
}

TEST(ThreadPool, UsesSeveralThreadsWhenWorkIsLong) {
  ThreadCount tc(2);
  std::atomic<int> concurrent{0}, peak{0};
  for (int rep = 0; rep < 50 && peak.load() < 2; ++rep)
    run_tasks(4, [&](int64_t) {
      int now = concurrent.fetch_add(1) + 1;
      int p = peak.load();
      while (now > p && !peak.compare_exchange_weak(p, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      concurrent.fetch_sub(1);
    });
  EXPECT_EQ(peak.load(), 2);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadCount tc(2);
  std::vector<std::atomic<int>> hits(8 * 16);
  run_tasks(8, [&](int64_t i) {
    EXPECT_TRUE(qslim::cpu::in_parallel());
    EXPECT_EQ(qslim::cpu::batch_chunks(128, 1e9), 1);
    run_tasks(16, [&](int64_t j) { hits[i * 16 + j].fetch_add(1); });
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_FALSE(qslim::cpu::in_parallel());
}

TEST(ThreadPool, ExceptionReachesCallerAfterOtherTasks) {
  ThreadCount tc(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(run_tasks(10,
                         [&](int64_t i) {
                           ran.fetch_add(1);
                           if (i == 3) throw std::runtime_error("task 3 failed");
                         }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 10);
  // The pool still works afterwards.
  std::atomic<int> count{0};
  run_tasks(10, [&](int64_t) { count.fetch_add(1); });
  EXPECT_EQ(count.load(), 10);
}

TEST(ThreadPool, ConcurrentCallersEachGetAllTheirTasks) {
  ThreadCount tc(2);
  auto caller = [](std::atomic<int64_t>* sum) {
    for (int rep = 0; rep < 200; ++rep) run_tasks(16, [&](int64_t i) { sum->fetch_add(i + 1); });
  };
  std::atomic<int64_t> a{0}, b{0};
  std::thread t1(caller, &a), t2(caller, &b);
  t1.join();
  t2.join();
  EXPECT_EQ(a.load(), 200 * 136);
  EXPECT_EQ(b.load(), 200 * 136);
}

TEST(ThreadPool, ParallelRangeCoversExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadCount tc(threads);
    for (int64_t n : {1, 5, 100, 4096, 100001}) {
      for (int64_t grain : {1, 7, 1000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        parallel_range(n, grain, [&](int64_t b, int64_t e) {
          EXPECT_LT(b, e);
          calls.fetch_add(1);
          EXPECT_GE(e - b, std::min(grain, n));  // chunks never fall below the grain
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " grain=" << grain;
        if (threads == 1 || n < 2 * grain) {
          EXPECT_EQ(calls.load(), 1);
        }
      }
    }
  }
}

TEST(ThreadPool, BatchChunksRespectLimits) {
  ThreadCount tc(2);
  EXPECT_EQ(qslim::cpu::batch_chunks(1, 1e9), 1);
  EXPECT_EQ(qslim::cpu::batch_chunks(128, 10.0), 1);  // too little work
  const int64_t c = qslim::cpu::batch_chunks(128, 1e7);
  EXPECT_GE(c, 2);
  EXPECT_LE(c, 8);
  qslim::set_num_threads(1);
  EXPECT_EQ(qslim::cpu::batch_chunks(128, 1e7), 1);
}

}  // namespace
