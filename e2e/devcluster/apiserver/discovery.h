// Discovery documents, the legacy (unaggregated) form that every kubectl and client-go reads:
// /version, /api (APIVersions), /apis (APIGroupList), /apis/<group> (APIGroup), and
// /api/v1 or /apis/<group>/<version> (APIResourceList: each type with its verbs, short names,
// categories, and its subresources as "pods/status" entries).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "e2e/devcluster/apiserver/resource_types.h"

namespace hotswap::devcluster {

// The Kubernetes version the dev cluster speaks (for /version and kubectl's skew warning).
inline constexpr const char* kServedKubernetesVersion = "v1.32.0";

nlohmann::json version_info();
nlohmann::json api_versions(const std::string& server_address);
nlohmann::json api_group_list(const ResourceRegistry& registry);
std::optional<nlohmann::json> api_group(const ResourceRegistry& registry, const std::string& group);
// nullopt: no such group/version.
std::optional<nlohmann::json> api_resource_list(const ResourceRegistry& registry, const std::string& group,
                                                const std::string& version);

// OpenAPI v3, as much as kubectl reads: the index (/openapi/v3: each group-version's document
// and its hash), and per group-version a document whose paths carry each type's PATCH operation
// with its x-kubernetes-group-version-kind and the fieldValidation query parameter, which is
// how kubectl learns that the server validates fields itself (so `kubectl apply` needs no
// --validate=false). No schemas are published: kubectl then computes strategic merge patches
// from its compiled-in types, as it does for a server without OpenAPI.
nlohmann::json openapi_v3_index(const ResourceRegistry& registry);
// gv_path: "api/v1" or "apis/<group>/<version>"; nullopt when no such group-version.
std::optional<nlohmann::json> openapi_v3_document(const ResourceRegistry& registry, const std::string& gv_path);

}  // namespace hotswap::devcluster
