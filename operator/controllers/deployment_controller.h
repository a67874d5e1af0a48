// The ModelDeployment controller. Each reconcile, level-triggered:
//  1. the Secret with the agents' control token (made once, random), the Service selecting the
//     replica Pods, and a PodDisruptionBudget that allows no voluntary disruption, so that a
//     drain's eviction waits until the replica has been moved live and deleted;
//  2. the serving gate of a new replica, once its agent has loaded the model (later flips belong
//     to the ModelMigration controller);
//  3. the replica count: Pods made or removed up to spec.replicas, never while a migration of
//     the deployment runs (its target is a Pod beyond the count until it takes over). An extra
//     replica the policy does not move (scale-down off, or nowhere to go) is ungated first and
//     then deleted; its agent drains on SIGTERM;
//  4. the triggers: policy::plan_migrations() over a snapshot (Nodes, replicas, their agents'
//     queue depth and load, active migrations), each decision a new ModelMigration owned by the
//     deployment, what was held back an Event;
//  5. status: replicas, readyReplicas, migratingReplicas, per-replica state, active migrations
//     and the conditions Available, Progressing, Degraded, Migrating with observedGeneration.
// It requeues every few seconds, since load and maintenance windows change without an event.
//
// Threads: reconcile() runs on the operator's workers, never twice at once for one key; the
// load memory and the expectations are locked.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "common/status.h"
#include "operator/controllers/cluster_view.h"
#include "operator/controllers/migration_controller.h"

namespace hotswap::controllers {

class DeploymentReconciler {
 public:
  explicit DeploymentReconciler(ClusterView& view) : view_(view) {}
  StatusOr<ReconcileResult> reconcile(const std::string& key);

 private:
  Status ensure_owned_objects(const DeploymentSpec& spec, const nlohmann::json& md);
  // The deployment's NetworkPolicy: made, kept as it should be, or removed when the runtime says none.
  Status ensure_network_policy(const DeploymentSpec& spec, const nlohmann::json& md);
  // Annotates the Node (hotswap.io/gpu-fault) so that no replica is placed on it again.
  void mark_gpu_faulty(const std::string& node, const nlohmann::json& fault, const std::string& pod);

  ClusterView& view_;
  Expectations pods_expected_;
  Expectations migrations_expected_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, policy::LoadMemory>> load_;  // deployment key -> pod -> memory
  std::map<std::string, std::string> ensured_;  // deployment key -> uid/generation whose objects exist
};

}  // namespace hotswap::controllers
