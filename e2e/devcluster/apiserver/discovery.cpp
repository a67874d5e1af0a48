#include "e2e/devcluster/apiserver/discovery.h"

#include <cstdio>
#include <functional>
#include <map>

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

json group_json(const std::string& group, const std::vector<std::string>& versions) {
  json vs = json::array();
  for (const auto& v : versions) vs.push_back({{"groupVersion", group + "/" + v}, {"version", v}});
  return {{"name", group}, {"versions", vs}, {"preferredVersion", vs.front()}};
}

json subresource_entry(const ResourceType& t, const std::string& sub) {
  json e = {{"name", t.resource + "/" + sub}, {"singularName", ""}, {"namespaced", t.namespaced}, {"kind", t.kind}};
  if (sub == "status") {
    e["verbs"] = {"get", "patch", "update"};
  } else if (sub == "binding") {
    e["kind"] = "Binding";
    e["verbs"] = {"create"};
  } else if (sub == "eviction") {
    e["group"] = "policy";
    e["version"] = "v1";
    e["kind"] = "Eviction";
    e["verbs"] = {"create"};
  } else if (sub == "finalize") {
    e["verbs"] = {"update"};
  } else if (sub == "scale") {
    e["group"] = "autoscaling";
    e["version"] = "v1";
    e["kind"] = "Scale";
    e["verbs"] = {"get", "patch", "update"};
  } else {
    e["verbs"] = json::array();
  }
  return e;
}

}  // namespace

json version_info() {
  return {{"major", "1"},
          {"minor", "32"},
          {"gitVersion", std::string(kServedKubernetesVersion) + "+hotswap-devcluster"},
          {"gitCommit", "0000000000000000000000000000000000000000"},
          {"gitTreeState", "clean"},
          {"buildDate", "2026-12-01T00:00:00Z"},
          {"goVersion", "none (C++)"},
          {"compiler", "gcc"},
          {"platform", "linux/amd64"}};
}

json api_versions(const std::string& server_address) {
  return {{"kind", "APIVersions"},
          {"versions", {"v1"}},
          {"serverAddressByClientCIDRs", json::array({{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", server_address}}})}};
}

json api_group_list(const ResourceRegistry& registry) {
  json groups = json::array();
  for (const auto& [g, versions] : registry.groups()) groups.push_back(group_json(g, versions));
  return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}};
}

std::optional<json> api_group(const ResourceRegistry& registry, const std::string& group) {
  for (const auto& [g, versions] : registry.groups()) {
    if (g != group) continue;
    json j = group_json(g, versions);
    j["kind"] = "APIGroup";
    j["apiVersion"] = "v1";
    return j;
  }
  return std::nullopt;
}

std::optional<json> api_resource_list(const ResourceRegistry& registry, const std::string& group,
                                      const std::string& version) {
  json resources = json::array();
  bool found = false;
  for (const auto& t : registry.all()) {
    if (t.group != group || t.version != version) continue;
    found = true;
    json verbs = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"};
    json e = {{"name", t.resource},
              {"singularName", t.singular},
              {"namespaced", t.namespaced},
              {"kind", t.kind},
              {"verbs", verbs},
              {"storageVersionHash", ""}};
    if (!t.short_names.empty()) e["shortNames"] = t.short_names;
    if (!t.categories.empty()) e["categories"] = t.categories;
    resources.push_back(std::move(e));
    for (const auto& sub : t.subresources) resources.push_back(subresource_entry(t, sub));
  }
  if (!found && !(group.empty() && version == "v1")) return std::nullopt;
  return json{{"kind", "APIResourceList"},
              {"apiVersion", "v1"},
              {"groupVersion", group.empty() ? version : group + "/" + version},
              {"resources", resources}};
}

namespace {

std::string gv_path_of(const ResourceType& t) {
  return t.group.empty() ? "api/" + t.version : "apis/" + t.group + "/" + t.version;
}

}  // namespace

std::optional<json> openapi_v3_document(const ResourceRegistry& registry, const std::string& gv_path) {
  json paths = json::object();
  bool found = false;
  for (const auto& t : registry.all()) {
    if (gv_path_of(t) != gv_path) continue;
    found = true;
    const std::string base = "/" + gv_path + (t.namespaced ? "/namespaces/{namespace}/" : "/") + t.resource + "/{name}";
    const json gvk = {{"group", t.group}, {"version", t.version}, {"kind", t.kind}};
    const json params = json::array({{{"name", "fieldValidation"}, {"in", "query"}, {"schema", {{"type", "string"}}}},
                                     {{"name", "dryRun"}, {"in", "query"}, {"schema", {{"type", "string"}}}},
                                     {{"name", "fieldManager"}, {"in", "query"}, {"schema", {{"type", "string"}}}}});
    const json op = {{"x-kubernetes-group-version-kind", gvk},
                     {"x-kubernetes-action", "patch"},
                     {"parameters", params},
                     {"responses", {{"200", {{"description", "OK"}}}}}};
    paths[base] = {{"patch", op}};
    json put = op;
    put["x-kubernetes-action"] = "put";
    paths[base]["put"] = put;
    json post = op;
    post["x-kubernetes-action"] = "post";
    const std::string collection =
        "/" + gv_path + (t.namespaced ? "/namespaces/{namespace}/" : "/") + t.resource;
    paths[collection] = {{"post", post}};
  }
  if (!found) return std::nullopt;
  return json{{"openapi", "3.0.0"},
              {"info", {{"title", "Kubernetes (hotswap dev cluster)"}, {"version", kServedKubernetesVersion}}},
              {"paths", paths},
              {"components", {{"schemas", json::object()}}}};
}

json openapi_v3_index(const ResourceRegistry& registry) {
  json paths = json::object();
  std::map<std::string, std::string> names;  // gv path -> the resources in it, to hash
  for (const auto& t : registry.all()) names[gv_path_of(t)] += t.resource + ":" + t.kind + ";" + t.schema.dump();
  for (const auto& [gv, text] : names) {
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(text));
    paths[gv] = {{"serverRelativeURL", "/openapi/v3/" + gv + "?hash=" + hash}};
  }
  return {{"paths", paths}};
}

}  // namespace hotswap::devcluster
