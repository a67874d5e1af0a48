// A fixed pool of worker threads for the CPU kernels.
//
// parallel_for splits [0, n) into at most size() contiguous ranges, runs them on the workers
// and the calling thread, and returns when all are done. The split depends only on n and
// size(), never on timing, so a kernel that gives each output element to one range computes
// it in the same order every time: results are deterministic and batch-invariant.
//
// Waiting: a forward pass calls parallel_for a few hundred times, milliseconds apart at most,
// and a condition-variable wake-up costs tens of microseconds. So workers spin (with a pause
// instruction) for about a millisecond after each task before they sleep, and the caller spins
// briefly before it sleeps waiting for them. An idle pool sleeps and uses no CPU, and a pool with
// more threads than cores never spins.
//
// Threads: the pool is driven by one thread at a time (the engine's step thread); calls from
// several threads at once are serialised by a mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hotswap::kernels {

class ThreadPool {
 public:
  // n_threads <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over contiguous ranges covering [0, n). Ranges smaller than min_grain are
  // not split further. Runs inline when n is small or the pool has one thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_grain = 1);

 private:
  void worker_loop(int index);

  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;       // guards sleeping and waking; the fast path uses the atomics alone
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // Written by the caller before generation_ is bumped (release), read by workers after they
  // see the new generation (acquire).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // ranges_[i] for worker i; last for caller
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  int spin_iterations_ = 0;
  std::vector<std::thread> workers_;
};

// Runs fn over [0, n) on pool, or inline when pool is null.
inline void parallel_for(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                         int64_t min_grain = 1) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  pool->parallel_for(n, fn, min_grain);
}

}  // namespace hotswap::kernels
