// The dev cluster's scheduler: binds each unbound Pod (of its scheduler name, not being deleted)
// to the node choose_node() picks (scheduling.h), through the pods/<name>/binding subresource as
// kube-scheduler does. A Pod that fits nowhere gets PodScheduled=False, reason Unschedulable,
// with the reasons in the message, and is retried when nodes or Pods change and every
// retry_interval. A client of any Kubernetes API server (operator/kube).
//
// Threads: the informers' threads queue keys; one worker thread of its own binds. start() and
// stop() from one owner thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "operator/kube/informer.h"
#include "operator/kube/rest_client.h"
#include "operator/kube/work_queue.h"

namespace hotswap::devcluster {

struct SchedulerOptions {
  std::string scheduler_name = "default-scheduler";
  std::chrono::milliseconds retry_interval{1000};
};

class Scheduler {
 public:
  Scheduler(const kube::RestClient& client, SchedulerOptions options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the informers and the worker; waits (bounded) for the caches to fill.
  Status start();
  void stop();
  // Pods bound so far.
  int64_t bindings() const { return bindings_.load(); }

 private:
  void run();
  void schedule(const std::string& key);
  void queue_pending();

  const kube::RestClient& client_;
  const SchedulerOptions options_;
  kube::Informer pods_;
  kube::Informer nodes_;
  kube::WorkQueue queue_;
  std::thread worker_;
  std::atomic<int64_t> bindings_{0};
};

}  // namespace hotswap::devcluster
