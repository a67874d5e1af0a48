// A fixed pool of worker threads for the CPU kernels.
//
// parallel_for cuts [0, n) into chunks whose boundaries depend only on n, size() and min_grain,
// and the calling thread and the workers claim chunks one at a time until none is left. A kernel
// gives each output element to exactly one fn(begin, end) call and computes it in a fixed
// order, so which thread runs a chunk never changes a result: outputs are deterministic and
// batch-invariant. Claiming chunks (rather than one fixed range per thread) keeps the pool
// going when a thread is preempted: on a machine shared with I/O threads, a worker descheduled
// for a time slice costs one chunk, not the whole call.
//
// Waiting: a forward pass calls parallel_for a few hundred times, milliseconds apart at most,
// and a condition-variable wake-up costs tens of microseconds. So workers spin (with a pause
// instruction) for a while after each call before they sleep, and the caller spins briefly
// before it sleeps waiting for the last chunks. An idle pool sleeps and uses no CPU, and a pool
// with more threads than cores never spins.
//
// Threads: the pool is driven by one thread at a time (the engine's step thread); calls from
// several threads at once are serialised by a mutex. fn must not call parallel_for on the same
// pool (it would deadlock on that mutex).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
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

  // fn(begin, end) over contiguous chunks covering [0, n), each exactly once. Chunks are never
  // smaller than min_grain (but for a short last one when n is not a multiple); runs inline
  // when n is small or the pool has one thread. An exception from fn on the calling thread is
  // rethrown after every chunk has finished; one on a worker is a broken invariant
  // (std::terminate).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_grain = 1);

  // The chunks parallel_for(n, ..., min_grain) uses: {count, size}; the last may be shorter.
  std::pair<int64_t, int64_t> chunking(int64_t n, int64_t min_grain) const;

 private:
  void worker_loop();
  // Claims and runs chunks of call `generation` until none is left. With `error` (the caller),
  // an exception from fn is kept there (the first one) and the chunk counts as finished.
  void run_chunks(uint32_t generation, std::exception_ptr* error);

  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;       // guards sleeping and waking; the fast path uses the atomics alone
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  // The current call, written by the caller before claim_ is set to (generation, 0). A worker
  // reads them only after claiming a chunk of that generation, which keeps the call open.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> chunks_{0};  // read before a claim, so atomic
  // High 32 bits: the call's generation; low 32 bits: the next chunk to claim.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};  // chunks finished in the current call
  std::atomic<uint32_t> generation_{0};
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
