// The rules of particular built-in kinds, beyond what every object obeys (api_objects.h):
// defaults and checks on create and update (Pod, Service, Namespace, Node, PodDisruptionBudget,
// CustomResourceDefinition, Secret's stringData), and the Pod subresources that are actions rather than state:
// binding (the scheduler's write) and eviction (a delete that honours PodDisruptionBudgets).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "e2e/devcluster/apiserver/api_error.h"
#include "e2e/devcluster/apiserver/api_objects.h"
#include "e2e/devcluster/apiserver/object_store.h"
#include "e2e/devcluster/apiserver/resource_types.h"

namespace hotswap::devcluster {

// Defaults and checks for a new object of a built-in kind. May read the store (not under its
// lock): a Service's clusterIP is allocated from 127.0.2.0/24 here.
ApiResult<bool> on_create(const ResourceType& type, nlohmann::json& object, ObjectStore& store);
// Checks an update of a built-in kind against the object it replaces (runs under the store's
// lock: must not touch the store). subresource: "" or "status".
ApiResult<bool> on_update(const ResourceType& type, nlohmann::json& object, const nlohmann::json& old,
                          const std::string& subresource);

// POST pods/<name>/binding: sets spec.nodeName once and marks the Pod scheduled.
ApiResult<nlohmann::json> bind_pod(ApiObjects& api, const std::string& ns, const std::string& name,
                                   const nlohmann::json& binding);
// POST pods/<name>/eviction: deletes the Pod unless a PodDisruptionBudget forbids it now
// (429 TooManyRequests, naming the budget and its numbers).
ApiResult<nlohmann::json> evict_pod(ApiObjects& api, const std::string& ns, const std::string& name,
                                    const nlohmann::json& eviction);

// A PodDisruptionBudget's status computed from the Pods it selects now (currentHealthy,
// desiredHealthy, expectedPods, disruptionsAllowed, conditions), as kube-controller-manager's
// disruption controller keeps it.
ApiResult<nlohmann::json> pdb_status(const nlohmann::json& pdb, const std::vector<nlohmann::json>& pods_in_namespace);

// True when the Pod's Ready condition is True.
bool pod_ready(const nlohmann::json& pod);

}  // namespace hotswap::devcluster
