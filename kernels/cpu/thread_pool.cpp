// ThreadPool: a generation counter publishes each call; each worker runs its range and
// decrements pending_; the caller runs the last range itself and then waits for pending_ to
// reach zero. Both sides spin briefly before sleeping (see the header); sleeping and waking go
// through mu_ so that no wake-up is lost.
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
  ranges_.resize(static_cast<size_t>(n_threads));
  // Spinning pays only when every thread has a core of its own; an oversubscribed pool sleeps.
  spin_iterations_ = n_threads <= static_cast<int>(std::thread::hardware_concurrency()) ? kSpinIterations : 0;
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 0; i < n_threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
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
      // which bump state under mu_ and notify; the predicate covers spurious wake-ups.
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    const auto [begin, end] = ranges_[static_cast<size_t>(index)];
    const auto* fn = fn_;
    if (begin < end) {
      // An exception must not cross the thread boundary, and the kernels report errors as
      // Status before they get here, so a throw is a broken invariant.
      try {
        (*fn)(begin, end);
      } catch (...) {
        std::terminate();
      }
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_grain) {
  if (n <= 0) return;
  const int64_t grain = std::max<int64_t>(1, min_grain);
  const int64_t parts = std::min<int64_t>(size(), std::max<int64_t>(1, n / grain));
  if (parts <= 1) {
    fn(0, n);
    return;
  }

  std::lock_guard<std::mutex> call_lk(call_mu_);
  // Even split: the first n % parts ranges get one extra element. Workers past `parts` get an
  // empty range; the caller always takes the last non-empty one.
  const int64_t base = n / parts;
  const int64_t extra = n % parts;
  std::pair<int64_t, int64_t> caller_range;
  int64_t begin = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t end = begin + base + (p < extra ? 1 : 0);
    if (p == parts - 1) {
      caller_range = {begin, end};
    } else {
      ranges_[static_cast<size_t>(p)] = {begin, end};
    }
    begin = end;
  }
  for (size_t w = static_cast<size_t>(parts - 1); w < workers_.size(); ++w) ranges_[w] = {0, 0};
  fn_ = &fn;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Under mu_, so a worker between its predicate check and its sleep cannot miss the bump.
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();

  std::exception_ptr caller_error;
  try {
    fn(caller_range.first, caller_range.second);
  } catch (...) {
    // Workers still hold &fn: wait for them before letting the exception unwind the caller.
    caller_error = std::current_exception();
  }
  bool done = false;
  for (int i = 0; i < spin_iterations_ && !done; ++i) {
    done = pending_.load(std::memory_order_acquire) == 0;
    if (!done) cpu_relax();
  }
  if (!done) {
    // No timeout: returning early would leave workers running fn against the caller's buffers.
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  fn_ = nullptr;
  if (caller_error) std::rethrow_exception(caller_error);
}

}  // namespace hotswap::kernels
