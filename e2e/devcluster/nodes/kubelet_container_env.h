// The environment the dev cluster kubelet gives a container, as Kubernetes builds it: POD_NAME,
// POD_NAMESPACE, POD_IP, NODE_NAME and HOSTNAME first (the dev cluster's own, so a command can
// always find its address), then envFrom, then env in order, each value with $(VAR) references
// to the variables before it expanded. valueFrom: fieldRef (the downward API: metadata.name,
// .namespace, .uid, .labels['k'], .annotations['k'], spec.nodeName, spec.serviceAccountName,
// status.podIP(s), status.hostIP(s)), configMapKeyRef and secretKeyRef (optional honoured).
// A failure names the variable and what is missing (the kubelet's CreateContainerConfigError).
//
// Threads: pure, except that lookup may call the API server.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace hotswap::devcluster {

// Reads a ConfigMap or Secret (resource "configmaps" / "secrets"); kNotFound when it is absent.
using ObjectLookup = std::function<StatusOr<nlohmann::json>(const std::string& resource, const std::string& ns,
                                                            const std::string& name)>;

StatusOr<std::map<std::string, std::string>> container_environment(const nlohmann::json& pod,
                                                                   const nlohmann::json& container,
                                                                   const std::string& pod_ip,
                                                                   const std::string& node_ip,
                                                                   const ObjectLookup& lookup);

}  // namespace hotswap::devcluster
