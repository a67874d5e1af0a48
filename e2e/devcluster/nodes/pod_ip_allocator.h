// The Pod IPs of the dev cluster's kubelets: each Pod gets a loopback address of its own,
// 127.0.1.N (Linux routes all of 127.0.0.0/8 to lo, so nothing needs configuring), and no two
// live Pods of one process share one, however many Kubelets the process runs: they share one
// allocator. Addresses are handed out round-robin, as host-local IPAM does, so a released one is
// reused as late as possible (a client still talking to the old Pod must not reach a new one).
//
// Threads: every method is safe from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/status.h"

namespace hotswap::devcluster {

class PodIpAllocator {
 public:
  // Addresses prefix + first .. prefix + last, e.g. "127.0.1." 10 .. 250.
  explicit PodIpAllocator(std::string prefix = "127.0.1.", int first = 10, int last = 250);

  // The process-wide allocator that Kubelets use when given none.
  static std::shared_ptr<PodIpAllocator> process_default();

  // A free address; kResourceExhausted when every one is in use.
  StatusOr<std::string> allocate();
  // Gives an address back; one not handed out (or already released) is ignored.
  void release(const std::string& ip);
  size_t in_use() const;
  size_t capacity() const { return static_cast<size_t>(last_ - first_ + 1); }

 private:
  const std::string prefix_;
  const int first_;
  const int last_;
  mutable std::mutex mu_;
  std::set<int> used_;
  int next_;  // where the round-robin search starts
};

}  // namespace hotswap::devcluster
