// Internal: the kernels' thread pool. The calling thread and num_threads() - 1 persistent workers
// claim tasks from a shared counter, and the caller returns as soon as every task has run, without
// waiting for workers to arrive at a barrier. On a loaded machine a descheduled worker then costs
// nothing (the caller runs its tasks), where an OpenMP team waits for every member: measured on
// this 2-core machine under load 4, 2-thread OpenMP regions ran 4-10x slower than one thread.
// Idle workers spin for a few microseconds and then sleep on a futex, so they never keep a core
// busy between steps.
//
// Results never depend on which thread runs a task: callers write per-task outputs (e.g. one
// partial weight gradient per batch chunk, summed in chunk order).
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

namespace qslim::cpu {

// A non-owning reference to a callable (cheaper than std::function: no allocation, no copy).
template <typename Sig>
class FunctionRef;
template <typename R, typename... A>
class FunctionRef<R(A...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit on purpose, like std::function
      : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, A... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
        }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// Threads that run_tasks uses (qslim::num_threads()).
int64_t pool_threads();
// True inside a pool task or an OpenMP parallel region: nested parallel calls run inline.
bool in_parallel();
// Runs task(i) once for every i in [0, ntasks), on this thread and the pool's workers, and returns
// when all have finished. An exception thrown by a task is rethrown here (the first one, after the
// other tasks finished). Inline when ntasks <= 1, with one thread, or when nested.
void run_tasks(int64_t ntasks, FunctionRef<void(int64_t)> task);
// fn(begin, end) over chunks of [0, n) of at least `grain` elements (a few per thread, so that a
// busy or descheduled thread's share is picked up by the others); inline when n < 2 * grain.
void parallel_range(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> fn);

}  // namespace qslim::cpu
