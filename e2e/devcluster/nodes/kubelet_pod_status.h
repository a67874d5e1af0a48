// The parts of a Pod's status the dev cluster kubelet owns, as pure functions over JSON: how its
// fields are written into a status other controllers also write (their conditions, such as the
// readiness gates' hotswap.io/serving, are kept), whether a status already says what the kubelet
// would write (so it writes nothing when nothing changed), and the Ready condition with its
// readiness gates, as the kubelet computes it. Plus the API's time formats.
//
// Owned: phase, reason, message, hostIP(s), podIP(s), startTime, containerStatuses, and the
// conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.
//
// Threads: pure functions.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace hotswap::devcluster {

// "2026-11-22T23:59:59Z" (metav1.Time) and "2026-11-22T23:59:59.123456Z" (metav1.MicroTime).
std::string rfc3339(std::chrono::system_clock::time_point t);
std::string rfc3339_micro(std::chrono::system_clock::time_point t);

bool is_kubelet_pod_condition(const std::string& type);

// `status` with the owned fields of `owned` (a field `owned` lacks is removed) and its owned
// conditions replaced in place (new ones appended); every other condition kept.
nlohmann::json merge_pod_status(const nlohmann::json& status, const nlohmann::json& owned);
// Whether `status` already holds every owned field as `owned` has it (conditions compared by
// status, reason, message and lastTransitionTime).
bool pod_status_matches(const nlohmann::json& status, const nlohmann::json& owned);

struct ConditionValue {
  std::string status;  // "True", "False"
  std::string reason;
  std::string message;
};
// Ready: ContainersNotReady (with unready_message) unless the containers are ready; then
// ReadinessGatesNotReady while a spec.readinessGates condition is missing from the Pod's
// status.conditions ("corresponding condition of pod readiness gate \"x\" does not exist.") or
// not True ("the status of pod readiness gate \"x\" is not \"True\", but False"); else True.
ConditionValue pod_ready_condition(const nlohmann::json& pod, bool containers_ready,
                                   const std::string& unready_message);

}  // namespace hotswap::devcluster
