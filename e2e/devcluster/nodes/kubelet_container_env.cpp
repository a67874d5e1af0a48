#include "e2e/devcluster/nodes/kubelet_container_env.h"

#include "e2e/devcluster/nodes/local_process.h"
#include "operator/kube/kubeconfig.h"
#include "operator/kube/object.h"

namespace hotswap::devcluster {

using json = nlohmann::json;

namespace {

std::string str(const json& j, const json::json_pointer& p) {
  if (!j.contains(p)) return "";
  const json& v = j[p];
  return v.is_string() ? v.get<std::string>() : "";
}

// The value in "metadata.labels['app']" for map "labels".
bool subscript_field(const std::string& path, const std::string& prefix, std::string* key) {
  if (path.rfind(prefix + "['", 0) != 0 || path.size() < prefix.size() + 4 || path.substr(path.size() - 2) != "']")
    return false;
  *key = path.substr(prefix.size() + 2, path.size() - prefix.size() - 4);
  return true;
}

StatusOr<std::string> field_ref_value(const json& pod, const std::string& path, const std::string& pod_ip,
                                      const std::string& node_ip) {
  if (path == "metadata.name") return kube::object_name(pod);
  if (path == "metadata.namespace") return kube::object_namespace(pod);
  if (path == "metadata.uid") return kube::metadata_field(pod, "uid");
  if (path == "spec.nodeName") return str(pod, "/spec/nodeName"_json_pointer);
  if (path == "spec.serviceAccountName") return str(pod, "/spec/serviceAccountName"_json_pointer);
  if (path == "status.podIP" || path == "status.podIPs") return pod_ip;
  if (path == "status.hostIP" || path == "status.hostIPs") return node_ip;
  std::string key;
  for (const char* map : {"labels", "annotations"}) {
    if (subscript_field(path, std::string("metadata.") + map, &key)) {
      const json::json_pointer p("/metadata/" + std::string(map));
      if (!pod.contains(p) || !pod[p].is_object()) return std::string();
      return pod[p].value(key, std::string());
    }
  }
  return invalid_argument("unsupported fieldRef fieldPath \"" + path + "\"");
}

// A key of a ConfigMap (data or binaryData) or a Secret (data, base64), or kNotFound.
StatusOr<std::string> object_key_value(const std::string& resource, const json& object, const std::string& key) {
  if (resource == "secrets") {
    const json data = object.value("data", json::object());
    if (data.contains(key) && data[key].is_string()) return kube::base64_decode(data[key].get<std::string>());
    const json string_data = object.value("stringData", json::object());
    if (string_data.contains(key) && string_data[key].is_string()) return string_data[key].get<std::string>();
  } else {
    const json data = object.value("data", json::object());
    if (data.contains(key) && data[key].is_string()) return data[key].get<std::string>();
    const json binary = object.value("binaryData", json::object());
    if (binary.contains(key) && binary[key].is_string()) return kube::base64_decode(binary[key].get<std::string>());
  }
  return not_found("key " + key + " not found");
}

}  // namespace

StatusOr<std::map<std::string, std::string>> container_environment(const json& pod, const json& container,
                                                                   const std::string& pod_ip,
                                                                   const std::string& node_ip,
                                                                   const ObjectLookup& lookup) {
  const std::string ns = kube::object_namespace(pod);
  std::map<std::string, std::string> env = {{"POD_NAME", kube::object_name(pod)},
                                            {"POD_NAMESPACE", ns},
                                            {"POD_IP", pod_ip},
                                            {"NODE_NAME", str(pod, "/spec/nodeName"_json_pointer)},
                                            {"HOSTNAME", kube::object_name(pod)}};
  auto fetch = [&](const std::string& resource, const std::string& name, bool optional,
                   std::optional<json>* out) -> Status {
    const char* kind = resource == "secrets" ? "secret" : "configmap";
    if (!lookup) return unavailable(std::string("cannot read ") + kind + " \"" + name + "\": no API client");
    auto object = lookup(resource, ns, name);
    if (object.ok()) {
      *out = std::move(object).value();
      return Status();
    }
    if (object.status().code() == StatusCode::kNotFound) {
      if (optional) return Status();
      return not_found(std::string(kind) + " \"" + name + "\" not found");
    }
    return object.status();
  };

  for (const auto& from : container.value("envFrom", json::array())) {
    const std::string prefix = from.value("prefix", std::string());
    for (const char* which : {"configMapRef", "secretRef"}) {
      if (!from.contains(which)) continue;
      const json& ref = from[which];
      const std::string resource = std::string(which) == "secretRef" ? "secrets" : "configmaps";
      std::optional<json> object;
      HOTSWAP_RETURN_IF_ERROR(fetch(resource, ref.value("name", std::string()), ref.value("optional", false), &object));
      if (!object) continue;
      for (const char* field : {"data", "binaryData", "stringData"}) {
        const json keys = object->value(field, json::object());
        for (const auto& [k, v] : keys.items()) {
          auto value = object_key_value(resource, *object, k);
          if (value.ok()) env[prefix + k] = std::move(value).value();
        }
      }
    }
  }

  for (const auto& var : container.value("env", json::array())) {
    const std::string name = var.value("name", std::string());
    if (name.empty()) continue;
    if (!var.contains("valueFrom")) {
      env[name] = expand_env_references(var.value("value", std::string()), env);
      continue;
    }
    const json& from = var["valueFrom"];
    const std::string where = "env " + name + ": ";
    if (from.contains("fieldRef")) {
      auto value = field_ref_value(pod, from["fieldRef"].value("fieldPath", std::string()), pod_ip, node_ip);
      if (!value.ok()) return value.status().with_context(where.substr(0, where.size() - 2));
      env[name] = std::move(value).value();
    } else if (from.contains("configMapKeyRef") || from.contains("secretKeyRef")) {
      const bool secret = from.contains("secretKeyRef");
      const json& ref = secret ? from["secretKeyRef"] : from["configMapKeyRef"];
      const std::string resource = secret ? "secrets" : "configmaps";
      const std::string object_name = ref.value("name", std::string());
      const std::string key = ref.value("key", std::string());
      const bool optional = ref.value("optional", false);
      std::optional<json> object;
      Status st = fetch(resource, object_name, optional, &object);
      if (!st.ok()) return st.with_context(where.substr(0, where.size() - 2));
      if (!object) continue;
      auto value = object_key_value(resource, *object, key);
      if (!value.ok()) {
        if (optional) continue;
        return not_found(where + "couldn't find key " + key + " in " + (secret ? "Secret " : "ConfigMap ") + ns + "/" +
                         object_name);
      }
      env[name] = std::move(value).value();
    } else {
      return unimplemented(where + "valueFrom " + from.dump() + " is not supported by the dev cluster kubelet");
    }
  }
  return env;
}

}  // namespace hotswap::devcluster
