#include "operator/kube/work_queue.h"

#include <algorithm>

namespace hotswap::kube {

WorkQueue::WorkQueue(WorkQueueOptions options) : options_(options) {}

void WorkQueue::add_locked(const std::string& key) {
  if (shutdown_ || dirty_.count(key)) return;
  dirty_.insert(key);
  if (processing_.count(key)) return;  // done() queues it
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::add(const std::string& key) {
  std::lock_guard<std::mutex> lk(mu_);
  add_locked(key);
}

void WorkQueue::add_after(const std::string& key, std::chrono::milliseconds delay) {
  if (delay.count() <= 0) return add(key);
  std::lock_guard<std::mutex> lk(mu_);
  if (shutdown_) return;
  const Clock::time_point when = Clock::now() + delay;
  auto it = waiting_.find(key);
  if (it != waiting_.end()) {
    if (it->second <= when) return;  // already due sooner
    due_.erase({it->second, key});
    it->second = when;
  } else {
    waiting_.emplace(key, when);
  }
  due_.insert({when, key});
  // A waiter may be sleeping until a later due time, or for its whole timeout.
  cv_.notify_all();
}

std::chrono::milliseconds WorkQueue::add_rate_limited(const std::string& key) {
  std::chrono::milliseconds delay;
  {
    std::lock_guard<std::mutex> lk(mu_);
    int n = failures_[key]++;
    // base * 2^n, computed in double so large n cannot overflow before the cap.
    double d = static_cast<double>(options_.base_delay.count());
    for (int i = 0; i < n && d < static_cast<double>(options_.max_delay.count()); ++i) d *= 2;
    delay =
        std::chrono::milliseconds(static_cast<int64_t>(std::min(d, static_cast<double>(options_.max_delay.count()))));
  }
  add_after(key, delay);
  return delay;
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard<std::mutex> lk(mu_);
  failures_.erase(key);
}

int WorkQueue::num_requeues(const std::string& key) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

void WorkQueue::promote_due_locked(Clock::time_point now) {
  while (!due_.empty() && due_.begin()->first <= now) {
    std::string key = due_.begin()->second;
    due_.erase(due_.begin());
    waiting_.erase(key);
    add_locked(key);
  }
}

std::optional<std::string> WorkQueue::get(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (shutdown_) return std::nullopt;
    Clock::time_point now = Clock::now();
    promote_due_locked(now);
    if (!queue_.empty()) {
      std::string key = std::move(queue_.front());
      queue_.pop_front();
      dirty_.erase(key);
      processing_.insert(key);
      return key;
    }
    if (now >= deadline) return std::nullopt;
    Clock::time_point until = deadline;
    if (!due_.empty()) until = std::min(until, due_.begin()->first);
    cv_.wait_until(lk, until);
  }
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard<std::mutex> lk(mu_);
  processing_.erase(key);
  if (dirty_.count(key) && !shutdown_) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool WorkQueue::shutting_down() const {
  std::lock_guard<std::mutex> lk(mu_);
  return shutdown_;
}

size_t WorkQueue::len() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}

size_t WorkQueue::waiting_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return waiting_.size();
}

size_t WorkQueue::processing_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return processing_.size();
}

}  // namespace hotswap::kube
