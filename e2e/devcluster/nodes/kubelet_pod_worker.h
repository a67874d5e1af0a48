// One Pod on a dev cluster node, as the kubelet runs it: a thread of its own that starts the
// Pod's containers as local processes on the Pod's loopback IP, probes them, restarts them per
// restartPolicy with the kubelet's back-off, reports the Pod's status, and on deletion stops
// them (SIGTERM, SIGKILL after the grace period) and removes the Pod with gracePeriodSeconds 0.
//
// The status it writes (PUT pods/<name>/status with the resourceVersion it read, again on a
// 409) replaces only the fields the kubelet owns: phase, hostIP(s), podIP(s), startTime,
// containerStatuses and the conditions PodReadyToStartContainers, Initialized, ContainersReady,
// Ready and PodScheduled. Other conditions (the readiness gates other controllers set) are kept,
// and Ready is True only while every container is ready and every spec.readinessGates condition
// is True. Nothing is written when the owned fields already read as computed.
//
// Threads: the worker's thread owns the containers and makes every API call. update(), kill()
// and shutdown() only hand it a message and return at once, so the informer may call them; the
// destructor joins the thread. The RestClient and the allocator must outlive the worker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "e2e/devcluster/nodes/pod_ip_allocator.h"
#include "operator/kube/rest_client.h"

namespace hotswap::devcluster {

class PodRun;

struct PodWorkerConfig {
  const kube::RestClient* client = nullptr;
  std::string node_name;
  std::string node_ip;
  std::string log_dir;  // <log_dir>/<namespace>_<pod>_<container>.log
  std::shared_ptr<PodIpAllocator> pod_ips;
  std::chrono::milliseconds sync_period{50};         // how often the thread looks at its processes
  std::chrono::milliseconds backoff_initial{10000};  // the first CrashLoopBackOff delay
  std::chrono::milliseconds backoff_max{300000};
  std::chrono::milliseconds shutdown_grace_max{10000};  // shutdown(): a Pod's grace, at most this
  std::map<std::string, std::string> node_env;          // added to every container's env (the Pod's own win)
};

// Why the kubelet refused a Pod at admission: it fails (phase Failed) and nothing runs.
struct PodRejection {
  std::string reason;   // "OutOfnvidia.com/gpu"
  std::string message;  // "Pod was rejected: Node didn't have enough resource: ..."
};

class PodWorker {
 public:
  PodWorker(PodWorkerConfig config, const nlohmann::json& pod, std::optional<PodRejection> rejection, int64_t gpus);
  ~PodWorker();
  PodWorker(const PodWorker&) = delete;
  PodWorker& operator=(const PodWorker&) = delete;

  // The Pod's newest version, from the informer.
  void update(const nlohmann::json& pod);
  // The Pod is gone from the API (deleted outright): SIGKILL its containers now and end.
  void kill();
  // The kubelet stops: SIGTERM, SIGKILL after the Pod's grace (at most shutdown_grace_max), end.
  // No API calls.
  void shutdown();
  // Waits for the thread (after kill() or shutdown(), or once done()).
  void join();

  // The thread has ended: the containers are stopped and the Pod IP is released.
  bool done() const { return done_.load(); }
  // Counts against the node's resources: admitted, not finished.
  bool holds_resources() const { return !rejected_ && !terminal_.load() && !done_.load(); }
  int64_t gpus() const { return gpus_; }
  const std::string& uid() const { return uid_; }
  const std::string& key() const { return key_; }  // "namespace/name"

 private:
  friend class PodRun;
  void run();

  const PodWorkerConfig config_;
  const std::string uid_;
  const std::string key_;
  const bool rejected_;
  const int64_t gpus_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const nlohmann::json> pod_;
  bool wake_ = false;
  bool kill_ = false;
  bool shutdown_ = false;

  std::atomic<bool> terminal_{false};
  std::atomic<bool> done_{false};
  std::unique_ptr<PodRun> run_;  // the thread's own: the containers and what it reported
  std::thread thread_;
};

}  // namespace hotswap::devcluster
