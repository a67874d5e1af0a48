// Reading the standard fields of a Kubernetes object held as JSON (metadata.name, namespace,
// resourceVersion, the cache key "namespace/name"), without a typed model: the client, the
// informers and the controllers pass objects around as nlohmann::json and only look at the few
// fields they need.
//
// Threads: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace hotswap::kube {

// A string field of metadata, or "" when it or metadata is missing or not a string.
inline std::string metadata_field(const nlohmann::json& object, const char* field) {
  if (!object.is_object()) return "";
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto it = meta->find(field);
  if (it == meta->end() || !it->is_string()) return "";
  return it->get<std::string>();
}

inline std::string object_name(const nlohmann::json& object) {
  return metadata_field(object, "name");
}
inline std::string object_namespace(const nlohmann::json& object) {
  return metadata_field(object, "namespace");
}
inline std::string object_resource_version(const nlohmann::json& object) {
  return metadata_field(object, "resourceVersion");
}

// The informer cache key, as client-go's MetaNamespaceKeyFunc: "namespace/name", or "name" for a
// cluster-scoped object.
inline std::string object_key(const std::string& ns, const std::string& name) {
  return ns.empty() ? name : ns + "/" + name;
}
inline std::string object_key(const nlohmann::json& object) {
  return object_key(object_namespace(object), object_name(object));
}

}  // namespace hotswap::kube
