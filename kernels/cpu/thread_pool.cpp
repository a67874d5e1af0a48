// ThreadPool: one generation counter under one mutex. parallel_for publishes the ranges and
// bumps the generation; each worker runs its range and decrements pending_; the caller runs the
// last range itself and then waits for pending_ to reach zero. Workers sleep on a condition
// variable between calls, so an idle pool uses no CPU.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <exception>

namespace hotswap::kernels {

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ranges_.resize(static_cast<size_t>(n_threads));
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 0; i < n_threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    // No timeout: a worker has nothing to do until the next call or the destructor, both of
    // which notify; the predicate covers spurious wake-ups.
    work_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const auto [begin, end] = ranges_[static_cast<size_t>(index)];
    const auto* fn = fn_;
    lk.unlock();
    if (begin < end) {
      // An exception must not cross the thread boundary, and the kernels report errors as
      // Status before they get here, so a throw is a broken invariant.
      try {
        (*fn)(begin, end);
      } catch (...) {
        std::terminate();
      }
    }
    lk.lock();
    if (--pending_ == 0) done_cv_.notify_one();
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
  {
    std::lock_guard<std::mutex> lk(mu_);
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
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  work_cv_.notify_all();

  std::exception_ptr caller_error;
  try {
    fn(caller_range.first, caller_range.second);
  } catch (...) {
    // Workers still hold &fn: wait for them before letting the exception unwind the caller.
    caller_error = std::current_exception();
  }
  {
    // No timeout: returning early would leave workers running fn against the caller's buffers.
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }
  if (caller_error) std::rethrow_exception(caller_error);
}

}  // namespace hotswap::kernels
