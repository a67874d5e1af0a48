// The dev cluster's kubelet for one simulated node: it registers the Node (Ready, addresses,
// capacity, allocatable, nodeInfo), renews the node's Lease in kube-node-lease and the Ready
// heartbeat every status_interval, and runs every Pod bound to the node (an informer on pods
// with fieldSelector spec.nodeName=<node>) as local processes on a loopback IP of its own,
// 127.0.1.N (hostNetwork Pods: the node's), one PodWorker (kubelet_pod_worker.h) per Pod. A
// client of any Kubernetes API server (operator/kube), so it can stand in for the node side of a
// real cluster.
//
// Admission, as the real kubelet's: a Pod asking for more nvidia.com/gpu than the node has free
// (or past the node's "pods" allocatable) fails at once, phase Failed, reason
// OutOfnvidia.com/gpu, message "Pod was rejected: Node didn't have enough resource:
// nvidia.com/gpu, requested: 2, used: 1, capacity: 2". Init containers are not run: such a Pod
// fails with reason UnsupportedPodSpec.
//
// Pods are keyed by uid, so an informer relist (reported as updates) never starts a second copy
// of a running container, and a Pod deleted outright (DELETED, or gone at a relist) has its
// processes killed at once. stop() stops every container (each Pod's grace, at most
// stop_grace_max) and marks the Node NotReady (best effort).
//
// Threads: the informer's thread hands Pods to their workers (never blocking); a heartbeat thread
// renews the Lease and Node status and reaps finished workers; each PodWorker has its own.
// start() and stop() from one owner thread. The RestClient must outlive the Kubelet.
#pragma once

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
#include "e2e/devcluster/nodes/kubelet_pod_worker.h"
#include "e2e/devcluster/nodes/pod_ip_allocator.h"
#include "operator/kube/informer.h"
#include "operator/kube/rest_client.h"

namespace hotswap::devcluster {

inline constexpr const char* kKubeletVersion = "v1.32.0-hotswap";
inline constexpr const char* kNodeLeaseNamespace = "kube-node-lease";

struct KubeletOptions {
  std::string node_name;              // required
  std::string node_ip = "127.0.1.1";  // the Node's InternalIP and every Pod's hostIP
  // Pod IPs; shared by every Kubelet of a process. Null: PodIpAllocator::process_default().
  std::shared_ptr<PodIpAllocator> pod_ips;
  std::string log_dir;                        // required: <log_dir>/<namespace>_<pod>_<container>.log (created)
  std::map<std::string, std::string> labels;  // beside kubernetes.io/hostname, os and arch
  // e.g. {"nvidia.com/gpu": "1", "cpu": "8", "memory": "32Gi", "pods": "110"}; cpu, memory and
  // pods default to this machine's cores, its memory and 110.
  std::map<std::string, std::string> capacity;
  std::map<std::string, std::string> allocatable;   // a resource not named here: its capacity
  std::chrono::milliseconds status_interval{1000};  // Lease renewal and Ready heartbeat
  int64_t lease_duration_seconds = 40;
  std::chrono::milliseconds restart_backoff_initial{10000};  // CrashLoopBackOff: doubling from this
  std::chrono::milliseconds restart_backoff_max{300000};
  std::chrono::milliseconds stop_grace_max{10000};  // stop(): a Pod's grace period, at most this
  std::chrono::milliseconds pod_sync_period{50};    // how often a Pod's worker looks at its processes
  std::chrono::milliseconds start_timeout{10000};   // start(): the Pod informer's first list
  // Added to every container's environment unless the container sets the name itself (the dev
  // cluster passes HOTSWAP_GPU_SPEED_FACTOR, the node's GPU class speed).
  std::map<std::string, std::string> container_env;
};

class Kubelet {
 public:
  Kubelet(const kube::RestClient& client, KubeletOptions options);
  ~Kubelet();
  Kubelet(const Kubelet&) = delete;
  Kubelet& operator=(const Kubelet&) = delete;

  // Registers the Node (creates it, or updates the one there: labels merged, spec kept), takes
  // the Lease, starts the heartbeat and the Pod informer and waits for its first list. An error
  // says what failed (no API server, a bad option); nothing is left running then.
  Status start();
  // Idempotent.
  void stop();

  const std::string& node_name() const { return options_.node_name; }
  // Pods with a worker (running, or finished and not yet deleted).
  size_t pod_count() const;
  // The Pod informer's successful lists (1 after start(); more after relists).
  int64_t pod_list_count() const { return pods_ ? pods_->list_count() : 0; }

 private:
  // Updates transitions_ as a condition changes.
  nlohmann::json node_status(bool ready, const std::string& now);
  Status register_node();
  void heartbeat();
  Status renew_lease();
  void mark_not_ready();
  void run_heartbeat();
  // Informer handlers.
  void pod_seen(const nlohmann::json& pod);
  void pod_gone(const nlohmann::json& pod);
  std::optional<PodRejection> admit(const nlohmann::json& pod) const;  // under workers_mu_
  void reap_workers();

  const kube::RestClient& client_;
  KubeletOptions options_;
  std::map<std::string, std::string> capacity_;     // with the defaults filled in
  std::map<std::string, std::string> allocatable_;  // the same
  std::string node_uid_;
  nlohmann::json lease_;                                                    // the Lease as last written
  std::map<std::string, std::pair<std::string, std::string>> transitions_;  // condition -> (status, time)
  std::unique_ptr<kube::Informer> pods_;

  mutable std::mutex workers_mu_;
  std::map<std::string, std::unique_ptr<PodWorker>> workers_;  // by Pod uid

  std::mutex heartbeat_mu_;
  std::condition_variable heartbeat_cv_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread heartbeat_;
};

}  // namespace hotswap::devcluster
