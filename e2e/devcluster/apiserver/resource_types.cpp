#include "e2e/devcluster/apiserver/resource_types.h"

#include <algorithm>

#include "e2e/devcluster/apiserver/schema_validation.h"

namespace hotswap::devcluster {
namespace {

ResourceType builtin(std::string group, std::string version, std::string resource, std::string kind, bool namespaced,
                     std::vector<std::string> short_names, std::vector<std::string> subresources, bool has_spec,
                     std::vector<std::string> categories = {}) {
  ResourceType t;
  t.group = std::move(group);
  t.version = std::move(version);
  t.resource = std::move(resource);
  t.kind = std::move(kind);
  t.singular = t.kind;
  std::transform(t.singular.begin(), t.singular.end(), t.singular.begin(), [](unsigned char c) { return std::tolower(c); });
  t.namespaced = namespaced;
  t.short_names = std::move(short_names);
  t.subresources = std::move(subresources);
  t.has_spec = has_spec;
  t.categories = std::move(categories);
  return t;
}

bool is_dns_label(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return s.front() != '-' && s.back() != '-';
}

std::vector<std::string> string_list(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

bool ResourceType::has_subresource(const std::string& name) const {
  return std::find(subresources.begin(), subresources.end(), name) != subresources.end();
}

ResourceRegistry::ResourceRegistry() {
  types_ = {
      builtin("", "v1", "namespaces", "Namespace", false, {"ns"}, {"status", "finalize"}, true),
      builtin("", "v1", "nodes", "Node", false, {"no"}, {"status"}, true),
      builtin("", "v1", "pods", "Pod", true, {"po"}, {"status", "binding", "eviction"}, true, {"all"}),
      builtin("", "v1", "services", "Service", true, {"svc"}, {"status"}, true, {"all"}),
      builtin("", "v1", "endpoints", "Endpoints", true, {"ep"}, {}, false),
      builtin("", "v1", "secrets", "Secret", true, {}, {}, false),
      builtin("", "v1", "configmaps", "ConfigMap", true, {"cm"}, {}, false),
      builtin("", "v1", "events", "Event", true, {"ev"}, {}, false),
      builtin("", "v1", "serviceaccounts", "ServiceAccount", true, {"sa"}, {}, false),
      builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, {}, {}, false),
      builtin("coordination.k8s.io", "v1", "leases", "Lease", true, {}, {}, true),
      builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, {"pdb"}, {"status"}, true),
      // Stored, not enforced: every Pod here is a process on loopback.
      builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, {"netpol"}, {}, true),
      // Deployments (a replica controller of their own below: Pods straight from the template,
      // without ReplicaSets) and RBAC (stored, not enforced): what a Helm chart installs.
      builtin("apps", "v1", "deployments", "Deployment", true, {"deploy"}, {"status"}, true, {"all"}),
      builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, {}, {}, false),
      builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, {}, {}, false),
      builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, {}, {}, false),
      builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, {}, {}, false),
      builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false,
              {"crd", "crds"}, {"status"}, true),
  };
  for (auto& t : types_)
    if (t.kind == "Endpoints") t.singular = "endpoints";
}

std::optional<ResourceType> ResourceRegistry::find(const std::string& group, const std::string& version,
                                                   const std::string& resource) const {
  std::lock_guard lock(mu_);
  for (const auto& t : types_)
    if (t.group == group && t.version == version && t.resource == resource) return t;
  return std::nullopt;
}

std::optional<ResourceType> ResourceRegistry::find_kind(const std::string& group, const std::string& kind) const {
  std::lock_guard lock(mu_);
  for (const auto& t : types_)
    if (t.group == group && t.kind == kind) return t;
  return std::nullopt;
}

std::vector<ResourceType> ResourceRegistry::all() const {
  std::lock_guard lock(mu_);
  return types_;
}

std::vector<std::pair<std::string, std::vector<std::string>>> ResourceRegistry::groups() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& t : types_) {
    if (t.group.empty()) continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& g) { return g.first == t.group; });
    if (it == out.end()) {
      out.push_back({t.group, {t.version}});
    } else if (std::find(it->second.begin(), it->second.end(), t.version) == it->second.end()) {
      it->second.push_back(t.version);
    }
  }
  return out;
}

Status ResourceRegistry::add_custom(const std::vector<ResourceType>& types) {
  std::lock_guard lock(mu_);
  for (const auto& n : types) {
    for (const auto& t : types_) {
      if (!t.custom && t.group == n.group && t.resource == n.resource) {
        return invalid_argument("resource " + n.key() + " is built in; a CustomResourceDefinition cannot serve it");
      }
    }
  }
  if (!types.empty()) {
    const std::string crd = types.front().crd_name;
    types_.erase(std::remove_if(types_.begin(), types_.end(), [&](const ResourceType& t) { return t.crd_name == crd; }),
                 types_.end());
  }
  types_.insert(types_.end(), types.begin(), types.end());
  return Status::ok_status();
}

void ResourceRegistry::remove_custom(const std::string& crd_name) {
  std::lock_guard lock(mu_);
  types_.erase(
      std::remove_if(types_.begin(), types_.end(), [&](const ResourceType& t) { return t.custom && t.crd_name == crd_name; }),
      types_.end());
}

StatusOr<std::vector<ResourceType>> resource_types_from_crd(const nlohmann::json& crd) {
  const nlohmann::json spec = crd.value("spec", nlohmann::json::object());
  const nlohmann::json names = spec.value("names", nlohmann::json::object());
  const std::string name = crd.value("/metadata/name"_json_pointer, std::string());
  const std::string group = spec.value("group", std::string());
  const std::string plural = names.value("plural", std::string());
  const std::string kind = names.value("kind", std::string());
  if (group.empty() || group.find('.') == std::string::npos)
    return invalid_argument("spec.group: Invalid value: \"" + group + "\": should be a domain with at least one dot");
  if (!is_dns_label(plural))
    return invalid_argument("spec.names.plural: Invalid value: \"" + plural + "\": a lowercase DNS-1035 label");
  if (kind.empty()) return invalid_argument("spec.names.kind: Required value");
  if (name != plural + "." + group)
    return invalid_argument("metadata.name: Invalid value: \"" + name + "\": must be spec.names.plural+\".\"+spec.group");
  const std::string scope = spec.value("scope", std::string());
  if (scope != "Namespaced" && scope != "Cluster")
    return invalid_argument("spec.scope: Unsupported value: \"" + scope + "\": supported values: \"Cluster\", \"Namespaced\"");
  const nlohmann::json versions = spec.value("versions", nlohmann::json::array());
  if (!versions.is_array() || versions.empty()) return invalid_argument("spec.versions: Required value");
  int storage = 0;
  std::vector<ResourceType> out;
  for (size_t i = 0; i < versions.size(); ++i) {
    const auto& v = versions[i];
    const std::string where = "spec.versions[" + std::to_string(i) + "]";
    const std::string vname = v.value("name", std::string());
    if (!is_dns_label(vname)) return invalid_argument(where + ".name: Invalid value: \"" + vname + "\"");
    if (v.value("storage", false)) ++storage;
    if (!v.value("served", false)) continue;
    const nlohmann::json schema = v.value("/schema/openAPIV3Schema"_json_pointer, nlohmann::json());
    if (schema.is_null()) return invalid_argument(where + ".schema.openAPIV3Schema: Required value");
    if (Status st = check_structural_schema(schema); !st.ok())
      return invalid_argument(where + ".schema.openAPIV3Schema: " + st.message());
    ResourceType t;
    t.group = group;
    t.version = vname;
    t.resource = plural;
    t.kind = kind;
    t.singular = names.value("singular", std::string());
    if (t.singular.empty()) {
      t.singular = kind;
      std::transform(t.singular.begin(), t.singular.end(), t.singular.begin(),
                     [](unsigned char c) { return std::tolower(c); });
    }
    t.namespaced = scope == "Namespaced";
    t.short_names = string_list(names.value("shortNames", nlohmann::json()));
    t.categories = string_list(names.value("categories", nlohmann::json()));
    const nlohmann::json sub = v.value("subresources", nlohmann::json::object());
    if (sub.contains("status")) t.subresources.push_back("status");
    if (sub.contains("scale")) t.subresources.push_back("scale");
    t.custom = true;
    t.crd_name = name;
    t.schema = schema;
    for (const auto& c : v.value("additionalPrinterColumns", nlohmann::json::array())) {
      PrinterColumn pc;
      pc.name = c.value("name", std::string());
      pc.type = c.value("type", std::string("string"));
      pc.json_path = c.value("jsonPath", std::string());
      pc.description = c.value("description", std::string());
      pc.priority = c.value("priority", 0);
      if (pc.name.empty() || pc.json_path.empty())
        return invalid_argument(where + ".additionalPrinterColumns: name and jsonPath are required");
      t.printer_columns.push_back(std::move(pc));
    }
    out.push_back(std::move(t));
  }
  if (storage != 1)
    return invalid_argument("spec.versions: Invalid value: must have exactly one version marked as storage version");
  if (out.empty()) return invalid_argument("spec.versions: Invalid value: must have at least one served version");
  return out;
}

}  // namespace hotswap::devcluster
