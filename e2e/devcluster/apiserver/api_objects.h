// ApiObjects: the Kubernetes semantics of every verb, without HTTP. Create stamps uid,
// creationTimestamp and generation and picks a generateName suffix; update checks
// resourceVersion (409 Conflict), keeps status apart from the main resource for types with a
// status subresource, bumps metadata.generation on spec changes only, and refuses new
// finalizers on an object being deleted; delete honours finalizers (deletionTimestamp, removal
// once the last finalizer goes) and a Pod's graceful termination; patch applies the three patch
// types; custom resources are defaulted, pruned and validated against their CRD's schema. The
// per-kind rules (Pod, Service, Namespace, CRD, binding, eviction) are in object_rules.h.
//
// Threads: safe from any thread (the store serialises writes).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "e2e/devcluster/apiserver/api_error.h"
#include "e2e/devcluster/apiserver/object_store.h"
#include "e2e/devcluster/apiserver/resource_types.h"

namespace hotswap::devcluster {

enum class PatchType { kJson, kMerge, kStrategic };

struct DeleteOptions {
  std::optional<int64_t> grace_period_seconds;
  std::string propagation_policy;  // "", "Background", "Foreground", "Orphan"
  std::optional<std::string> precondition_uid;
  std::optional<std::string> precondition_resource_version;
};

// ?fieldValidation=: what to do with fields a custom resource's schema does not declare.
enum class FieldValidation { kIgnore, kWarn, kStrict };

struct WriteResult {
  nlohmann::json object;
  std::vector<std::string> warnings;  // for Warning: headers
};

class ApiObjects {
 public:
  ApiObjects(ObjectStore& store, ResourceRegistry& registry) : store_(store), registry_(registry) {}

  ApiResult<WriteResult> create(const ResourceType& type, const std::string& ns, nlohmann::json object,
                                FieldValidation validation);
  // subresource: "" or "status".
  ApiResult<WriteResult> update(const ResourceType& type, const std::string& ns, const std::string& name,
                                nlohmann::json object, const std::string& subresource, FieldValidation validation);
  ApiResult<WriteResult> patch(const ResourceType& type, const std::string& ns, const std::string& name,
                               PatchType patch_type, const nlohmann::json& patch, const std::string& subresource,
                               FieldValidation validation);
  // The object after the call: being deleted (deletionTimestamp set, still stored) or gone.
  ApiResult<nlohmann::json> remove(const ResourceType& type, const std::string& ns, const std::string& name,
                                   const DeleteOptions& options);

  ObjectStore& store() { return store_; }
  ResourceRegistry& registry() { return registry_; }

 private:
  // Checks and completes an object on its way in (create and update): apiVersion/kind,
  // namespace, name; custom resources against their schema; the kind's own rules.
  ApiResult<std::vector<std::string>> admit(const ResourceType& type, const std::string& ns, nlohmann::json& object,
                                            const nlohmann::json* old, FieldValidation validation);
  // The update path shared by update() and patch(): `next` replaces `current` under the rules.
  ApiResult<ObjectStore::Mutation> merge_update(const ResourceType& type, const std::string& ns,
                                                const nlohmann::json& current, nlohmann::json next,
                                                const std::string& subresource, FieldValidation validation,
                                                std::vector<std::string>& warnings);

  ObjectStore& store_;
  ResourceRegistry& registry_;
};

// "Pod \"x\"" style name for messages: kind and name.
std::string kind_and_name(const ResourceType& type, const std::string& name);
// "pods \"x\"" (core) or "modeldeployments.hotswap.io \"x\"" (a group), as kube-apiserver says.
std::string resource_and_name(const ResourceType& type, const std::string& name);
// RFC 3339 UTC with seconds: "2026-12-01T20:00:00Z".
std::string now_rfc3339();

}  // namespace hotswap::devcluster
