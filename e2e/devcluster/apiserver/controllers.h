// The controllers that live inside the dev cluster's API server process, as
// kube-controller-manager's and the apiextensions server's do beside a real one: the garbage
// collector (ownerReferences: background, foreground and orphan deletion), Deployments (Pods
// from the template up to spec.replicas, owned by the Deployment; status counts them), the namespace
// controller (a terminating namespace's content is deleted, then the namespace), CRD cleanup
// (a deleted CRD's custom resources go, then its types), CRD registration (an established CRD's
// types are served; status says Established), and PodDisruptionBudget status.
//
// They are level-triggered: any change wakes one thread that reconciles the whole (small)
// store, at most every 50 ms, and once a second regardless.
//
// Threads: one thread of its own, started by start() and joined by stop().
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "e2e/devcluster/apiserver/api_objects.h"

namespace hotswap::devcluster {

class Controllers {
 public:
  explicit Controllers(ApiObjects& api) : api_(api) {}
  ~Controllers() { stop(); }

  void start();
  void stop();
  // One reconcile pass, on the caller's thread (tests, and the server before it listens).
  void reconcile();
  // Makes the CRD's types served (or refused, in its status): called right after a CRD write so
  // that its resources can be used by the next request.
  void register_crd(const nlohmann::json& crd);

 private:
  void run();

  ApiObjects& api_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool dirty_ = false;
  bool stopping_ = false;
  uint64_t watch_id_ = 0;
  std::thread thread_;
};

}  // namespace hotswap::devcluster
