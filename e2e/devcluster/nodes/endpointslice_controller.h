// The dev cluster's EndpointSlice controller, as kube-controller-manager's endpointslice and
// endpoints controllers: for each Service with a selector it keeps the discovery.k8s.io/v1
// EndpointSlices (one per distinct set of resolved ports) and the legacy core/v1 Endpoints
// object that list the selected Pods, so that the service proxy (service_proxy.h) and
// `kubectl get endpoints,endpointslices` see which Pods serve. Readiness gates need nothing
// here: the kubelet folds them into the Pod's Ready condition, which is what this reads.
//
// Level-triggered: informers on Services, Pods, EndpointSlices (only ours) and Endpoints queue
// service keys; a worker reconciles one key by computing the desired objects with the pure
// functions below and writing only the ones that differ (PUT with the cached resourceVersion; a
// stale cache is a 409 and a retry). Slices of Services that are gone or lost their selector are
// deleted (the API server's garbage collector would also get them through their ownerReference).
// It talks to the API server only through operator/kube, so it also runs against a real one.
//
// Threads: the informers' threads run the handlers, which only queue keys; `workers` threads
// reconcile; stop() (and the destructor) shuts the queue, stops the informers and joins.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "operator/kube/informer.h"
#include "operator/kube/rest_client.h"
#include "operator/kube/work_queue.h"

namespace hotswap::devcluster {

inline constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";
inline constexpr const char* kManagedByLabel = "endpointslice.kubernetes.io/managed-by";
inline constexpr const char* kEndpointSliceControllerName = "endpointslice-controller.hotswap.io";
// On the Endpoints we write: tells a real EndpointSlice mirroring controller to leave them alone.
inline constexpr const char* kSkipMirrorLabel = "endpointslice.kubernetes.io/skip-mirror";
inline constexpr const char* kHeadlessLabel = "service.kubernetes.io/headless";

// ---- The decisions, as pure functions over JSON objects -------------------------------------

// A Service's spec.selector (a map) against an object's labels: every pair present. An empty or
// missing selector selects nothing (such Services have no managed endpoints).
bool selector_matches(const nlohmann::json& selector, const nlohmann::json& labels);
// Has a non-empty selector and is not ExternalName: the controller keeps its endpoints.
bool service_has_managed_endpoints(const nlohmann::json& service);
// The Pod's Ready condition is True (the kubelet's verdict, readiness gates included).
bool pod_condition_ready(const nlohmann::json& pod);
// Has an IPv4 address (status.podIPs or podIP) and is not terminal (Succeeded / Failed).
bool pod_can_be_endpoint(const nlohmann::json& pod);
// The IPv4 address of a Pod, or "".
std::string pod_ipv4(const nlohmann::json& pod);

// A Service port's targetPort resolved for one Pod: a number as it is (missing: the port), a
// name looked up among the Pod's container ports of the same protocol; nullopt when the Pod has
// no such port (that Pod then serves the Service without this port, as in Kubernetes).
std::optional<int> resolve_target_port(const nlohmann::json& service_port, const nlohmann::json& pod);

// The EndpointSlices the Service should have, given candidate Pods (filtered here by namespace,
// selector and pod_can_be_endpoint): one slice per distinct resolved port set, ordered by it,
// endpoints ordered by Pod name; one empty placeholder slice when no Pod is selected. Each has
// metadata {namespace, generateName "<service>-", labels, ownerReferences} and no name:
// reconcile names it after an existing slice or lets the server generate one.
// Endpoint conditions (kube's rules): serving = Ready (or publishNotReadyAddresses), ready =
// serving and not terminating (or publishNotReadyAddresses), terminating = deletionTimestamp.
std::vector<nlohmann::json> desired_endpoint_slices(const nlohmann::json& service,
                                                    const std::vector<nlohmann::json>& pods);

// The legacy Endpoints object (named after the Service): subsets grouping Pods by resolved port
// set, ready Pods under addresses, the rest under notReadyAddresses; terminating Pods are left out
// unless publishNotReadyAddresses.
nlohmann::json desired_endpoints(const nlohmann::json& service, const std::vector<nlohmann::json>& pods);

// Whether `current` (as stored) already is `desired`: equal content (ports, endpoints, subsets,
// addressType; missing lists read as empty), and desired labels and ownerReferences present.
bool endpoint_slice_up_to_date(const nlohmann::json& current, const nlohmann::json& desired);
bool endpoints_up_to_date(const nlohmann::json& current, const nlohmann::json& desired);

// ---- The controller -------------------------------------------------------------------------

struct EndpointSliceControllerOptions {
  int workers = 1;
  bool manage_endpoints = true;  // also keep the legacy core/v1 Endpoints
  kube::WorkQueueOptions queue;
  // A slice just created is awaited in the informer's cache this long before the Service is
  // reconciled again, so that a stale cache does not create it twice.
  std::chrono::milliseconds create_settle_timeout{2000};
};

struct EndpointSliceControllerStats {
  int64_t reconciles = 0;
  int64_t writes = 0;    // creates, updates and deletes that succeeded
  int64_t failures = 0;  // reconciles that failed and were retried
  Status last_error;     // of the last failed reconcile
};

class EndpointSliceController {
 public:
  // The client must outlive the controller.
  explicit EndpointSliceController(const kube::RestClient& client, EndpointSliceControllerOptions options = {});
  ~EndpointSliceController();
  EndpointSliceController(const EndpointSliceController&) = delete;
  EndpointSliceController& operator=(const EndpointSliceController&) = delete;

  // Starts the informers and the workers; the workers reconcile once every informer has synced.
  Status start();
  void stop();
  bool wait_for_sync(std::chrono::milliseconds timeout) const;

  EndpointSliceControllerStats stats() const;

 private:
  void add_handlers();
  void enqueue_services_selecting(const nlohmann::json& pod);
  void run_worker();
  Status reconcile(const std::string& service_key);
  Status reconcile_slices(const std::string& ns, const std::string& name, const nlohmann::json* service);
  Status reconcile_endpoints(const std::string& ns, const std::string& name, const nlohmann::json* service);
  bool synced() const;
  void count_write() { writes_.fetch_add(1); }

  const kube::RestClient& client_;
  const EndpointSliceControllerOptions options_;
  kube::WorkQueue queue_;
  std::unique_ptr<kube::Informer> services_;
  std::unique_ptr<kube::Informer> pods_;
  std::unique_ptr<kube::Informer> slices_;
  std::unique_ptr<kube::Informer> endpoints_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  // Slices created but not yet seen by the slice informer: "ns/name" of the slice -> (service
  // key, when to stop waiting).
  struct PendingCreate {
    std::string service_key;
    std::chrono::steady_clock::time_point give_up_at;
  };
  mutable std::mutex mu_;  // pending_, last_error_
  std::map<std::string, PendingCreate> pending_;
  Status last_error_;
  std::atomic<int64_t> reconciles_{0};
  std::atomic<int64_t> writes_{0};
  std::atomic<int64_t> failures_{0};
};

}  // namespace hotswap::devcluster
