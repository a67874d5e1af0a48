// The resource types the dev cluster's API server serves: the built-in ones it knows from the
// start (core/v1 and the few groups the system uses) and the custom ones that each established
// CustomResourceDefinition adds. A type is what discovery lists, what a URL path resolves to,
// and what the store keys objects by ("group/resource").
//
// Threads: ResourceRegistry is safe to use from any thread (one mutex); lookups return copies.
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::devcluster {

// A CRD's additionalPrinterColumns entry.
struct PrinterColumn {
  std::string name;
  std::string type;  // integer, number, string, boolean, date
  std::string json_path;
  std::string description;
  int priority = 0;  // > 0: only in -o wide
};

struct ResourceType {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "pods"
  std::string kind;      // "Pod"
  std::string singular;  // "pod"
  bool namespaced = true;
  std::vector<std::string> short_names;
  std::vector<std::string> categories;
  std::vector<std::string> subresources;  // "status", "binding", "eviction", ...
  // Whether the object has a spec whose changes bump metadata.generation. Types without one
  // (ConfigMap, Secret, Event, ...) keep generation unset.
  bool has_spec = true;
  // Custom resources: the CRD's name, this version's OpenAPI v3 schema and printer columns.
  bool custom = false;
  std::string crd_name;
  nlohmann::json schema;
  std::vector<PrinterColumn> printer_columns;

  // "apps/v1" or "v1".
  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
  // The store's key: "pods", "hotswap.io/modeldeployments".
  std::string key() const { return group.empty() ? resource : group + "/" + resource; }
  bool has_subresource(const std::string& name) const;
};

class ResourceRegistry {
 public:
  // The built-in types only.
  ResourceRegistry();

  // The type at /api/v1/<resource> or /apis/<group>/<version>/<resource>.
  std::optional<ResourceType> find(const std::string& group, const std::string& version,
                                   const std::string& resource) const;
  // The served version of a group/kind (the first one registered).
  std::optional<ResourceType> find_kind(const std::string& group, const std::string& kind) const;
  std::vector<ResourceType> all() const;
  // The groups with their versions, in registration order (core group excluded).
  std::vector<std::pair<std::string, std::vector<std::string>>> groups() const;

  // Adds or replaces the types a CRD serves (one per served version); error if it would shadow
  // a built-in type.
  Status add_custom(const std::vector<ResourceType>& types);
  // Removes every type of the CRD named crd_name.
  void remove_custom(const std::string& crd_name);

 private:
  mutable std::mutex mu_;
  std::vector<ResourceType> types_;
};

// The types a CustomResourceDefinition object (apiextensions.k8s.io/v1) describes, checked:
// names, scope, versions (exactly one storage version, served ones listed), structural schemas.
// Errors are kInvalidArgument naming the field ("spec.versions[0].schema.openAPIV3Schema: ...").
StatusOr<std::vector<ResourceType>> resource_types_from_crd(const nlohmann::json& crd);

}  // namespace hotswap::devcluster
