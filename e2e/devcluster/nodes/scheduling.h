// The dev cluster scheduler's decision, as a pure function over the cluster's state: which node
// a pending Pod goes to. A node fits when it is Ready and schedulable, carries every label of the
// Pod's nodeSelector, satisfies its required node affinity (nodeSelectorTerms: any term, every
// expression of it; In, NotIn, Exists, DoesNotExist, Gt, Lt), has no NoSchedule/NoExecute taint
// the Pod does not tolerate, and has room for the Pod's nvidia.com/gpu request beside the Pods
// already bound to it. Among the fitting nodes the one with the fewest Pods wins (then by name),
// which spreads replicas. When none fits, the message says why for each, as kube-scheduler's
// FailedScheduling event does: "0/3 nodes are available: 1 node(s) were unschedulable, 2
// Insufficient nvidia.com/gpu."
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::devcluster {

inline constexpr const char* kGpuResource = "nvidia.com/gpu";

// The GPUs a Pod asks for: the sum of its containers' limits (or requests) of nvidia.com/gpu.
int64_t pod_gpu_request(const nlohmann::json& pod);

// Does `pod` tolerate `taint`? (Kubernetes' toleration matching: key, operator Equal/Exists,
// value, effect; an empty key with Exists tolerates everything.)
bool tolerates(const nlohmann::json& pod, const nlohmann::json& taint);

// Does the node satisfy the Pod's nodeSelector and required node affinity?
bool node_matches_selectors(const nlohmann::json& pod, const nlohmann::json& node);

// The chosen node's name, or kFailedPrecondition with the reasons. bound_pods: every Pod with a
// spec.nodeName that is not finished (they count against capacity and spreading).
StatusOr<std::string> choose_node(const nlohmann::json& pod, const std::vector<nlohmann::json>& nodes,
                                  const std::vector<nlohmann::json>& bound_pods);
// The same over objects held elsewhere (the scheduler's informer caches), copying none.
StatusOr<std::string> choose_node_among(const nlohmann::json& pod, const std::vector<const nlohmann::json*>& nodes,
                                        const std::vector<const nlohmann::json*>& bound_pods);

}  // namespace hotswap::devcluster
