// A rate-limited work queue of string keys ("namespace/name"), as controllers use between
// informer handlers and reconcile workers (client-go's workqueue semantics):
//  - a key queued twice is handed out once (deduplicated while queued);
//  - a key is never handed to two workers at once: one added while a worker holds it is queued
//    again when that worker calls done();
//  - add_after() delays a key (a later call with an earlier time wins);
//  - add_rate_limited() delays it by the key's own exponential backoff, base * 2^failures up to
//    a cap, until forget() resets it after a success;
//  - shutdown() wakes every waiting worker; get() then returns nullopt and adds are dropped.
// Delayed keys need no timer thread: get() moves due keys to the queue and sleeps only until
// the next one is due.
//
// Threads: every method is safe from any thread; get() blocks its caller up to its timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace hotswap::kube {

struct WorkQueueOptions {
  std::chrono::milliseconds base_delay{5};      // the first retry's delay
  std::chrono::milliseconds max_delay{300000};  // the cap (5 minutes)
};

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkQueue(WorkQueueOptions options = {});

  void add(const std::string& key);
  void add_after(const std::string& key, std::chrono::milliseconds delay);
  // Counts a failure of `key` and queues it after its backoff; returns that delay.
  std::chrono::milliseconds add_rate_limited(const std::string& key);
  // The key succeeded: its next failure starts from base_delay again.
  void forget(const std::string& key);
  int num_requeues(const std::string& key) const;

  // The next key, marked as being processed until done(key); nullopt on timeout or shutdown.
  std::optional<std::string> get(std::chrono::milliseconds timeout);
  void done(const std::string& key);

  void shutdown();
  bool shutting_down() const;
  size_t len() const;            // keys ready to hand out
  size_t waiting_count() const;  // keys delayed by add_after / add_rate_limited
  size_t processing_count() const;

 private:
  void add_locked(const std::string& key);
  void promote_due_locked(Clock::time_point now);

  const WorkQueueOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;                            // ready, in order
  std::unordered_set<std::string> dirty_;                    // queued, or to queue again when done
  std::unordered_set<std::string> processing_;               // handed out, not yet done
  std::map<std::string, Clock::time_point> waiting_;         // delayed key -> due time
  std::set<std::pair<Clock::time_point, std::string>> due_;  // the same, by time
  std::unordered_map<std::string, int> failures_;
  bool shutdown_ = false;
};

}  // namespace hotswap::kube
