// ThreadPool: each call gets a generation number; the caller publishes the call, sets claim_ to
// (generation, 0) and bumps generation_; workers wake (or see it while spinning) and claim
// chunks with a compare-and-swap that succeeds only while claim_ still carries their
// generation, so a late worker can never take a chunk of a later call. Both sides spin
// briefly before sleeping (see the header); sleeping and waking go through mu_ so that no
// wake-up is lost.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <exception>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace hotswap::kernels {

namespace {

// About a millisecond of spinning on current x86 cores before a thread sleeps.
constexpr int kSpinIterations = 1 << 14;
// Chunks per thread: enough that a preempted thread's share is taken over, few enough that
// claiming costs nothing next to the work.
constexpr int64_t kChunksPerThread = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Spinning pays only when every thread has a core of its own; an oversubscribed pool sleeps.
  spin_iterations_ = n_threads <= static_cast<int>(std::thread::hardware_concurrency()) ? kSpinIterations : 0;
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 0; i < n_threads - 1; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

std::pair<int64_t, int64_t> ThreadPool::chunking(int64_t n, int64_t min_grain) const {
  const int64_t grain = std::max<int64_t>(1, min_grain);
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  const int64_t chunks = std::min<int64_t>(max_chunks, size() > 1 ? size() * kChunksPerThread : 1);
  const int64_t chunk = (n + chunks - 1) / chunks;
  return {(n + chunk - 1) / chunk, chunk};
}

void ThreadPool::run_chunks(uint32_t generation, std::exception_ptr* error) {
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    uint64_t index;
    do {
      if (static_cast<uint32_t>(c >> 32) != generation) return;
      index = c & 0xffffffffu;
      if (static_cast<int64_t>(index) >= chunks_.load(std::memory_order_relaxed)) return;
    } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    const int64_t begin = static_cast<int64_t>(index) * chunk_;
    const int64_t end = std::min(n_, begin + chunk_);
    if (error == nullptr) {
      (*fn_)(begin, end);
    } else {
      try {
        (*fn_)(begin, end);
      } catch (...) {
        if (!*error) *error = std::current_exception();
      }
    }
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::worker_loop() {
  uint32_t seen = 0;
  for (;;) {
    bool ready = false;
    for (int i = 0; i < spin_iterations_; ++i) {
      if (generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed)) {
        ready = true;
        break;
      }
      cpu_relax();
    }
    if (!ready) {
      // No timeout: a worker has nothing to do until the next call or the destructor, both of
      // which change state under mu_ and notify; the predicate covers spurious wake-ups.
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    // An exception must not cross the thread boundary, and the kernels report errors as Status
    // before they get here, so a throw is a broken invariant.
    try {
      run_chunks(seen, nullptr);
    } catch (...) {
      std::terminate();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_grain) {
  if (n <= 0) return;
  const auto [chunks, chunk] = chunking(n, min_grain);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }

  std::lock_guard<std::mutex> call_lk(call_mu_);
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  chunks_.store(chunks, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(uint64_t{generation} << 32, std::memory_order_release);
  {
    // Under mu_, so a worker between its predicate check and its sleep cannot miss the bump.
    std::lock_guard<std::mutex> lk(mu_);
    generation_.store(generation, std::memory_order_release);
  }
  work_cv_.notify_all();

  // Workers may still run chunks with &fn after one of ours throws: every chunk finishes
  // before the exception leaves.
  std::exception_ptr caller_error;
  run_chunks(generation, &caller_error);
  bool done = false;
  for (int i = 0; i < spin_iterations_ && !done; ++i) {
    done = done_.load(std::memory_order_acquire) >= chunks;
    if (!done) cpu_relax();
  }
  if (!done) {
    // No timeout: returning early would leave workers running fn against the caller's buffers.
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load(std::memory_order_acquire) >= chunks; });
  }
  // Close the call: no worker can claim a chunk of it any more.
  claim_.store(uint64_t{generation} << 32 | 0xffffffffu, std::memory_order_release);
  fn_ = nullptr;
  if (caller_error) std::rethrow_exception(caller_error);
}

}  // namespace hotswap::kernels
