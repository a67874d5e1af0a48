#include "e2e/devcluster/apiserver/object_rules.h"

#include <cpprest/asyncrt_utils.h>

#include <cmath>
#include <set>

#include "e2e/devcluster/apiserver/selectors.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

bool is_core(const ResourceType& t, const char* resource) { return t.group.empty() && t.resource == resource; }

ApiError field_invalid(const ResourceType& type, const json& object, const std::string& field,
                       const std::string& reason, const std::string& what) {
  const std::string name = object.value("/metadata/name"_json_pointer, std::string());
  json details = {{"name", name},
                  {"kind", type.kind},
                  {"causes", json::array({{{"reason", reason}, {"message", what}, {"field", field}}})}};
  if (!type.group.empty()) details["group"] = type.group;
  const std::string kind = type.group.empty() ? type.kind : type.kind + "." + type.group;
  return invalid_error(kind + " \"" + name + "\" is invalid: " + field + ": " + what, details);
}

json condition(const std::string& type, const std::string& status, const std::string& reason = "",
               const std::string& message = "") {
  json c = {{"type", type}, {"status", status}, {"lastTransitionTime", now_rfc3339()}};
  if (!reason.empty()) c["reason"] = reason;
  if (!message.empty()) c["message"] = message;
  return c;
}

// Sets (or replaces) a condition of that type in object.status.conditions.
void set_condition(json& object, json c) {
  json& conds = object["status"]["conditions"];
  if (!conds.is_array()) conds = json::array();
  for (auto& existing : conds) {
    if (existing.value("type", std::string()) == c["type"].get<std::string>()) {
      if (existing.value("status", std::string()) == c["status"].get<std::string>())
        c["lastTransitionTime"] = existing.value("lastTransitionTime", c["lastTransitionTime"].get<std::string>());
      existing = std::move(c);
      return;
    }
  }
  conds.push_back(std::move(c));
}

ApiResult<bool> pod_on_create(const ResourceType& type, json& pod) {
  json& spec = pod["spec"];
  if (!spec.is_object()) return field_invalid(type, pod, "spec", "FieldValueRequired", "Required value");
  if (!spec.contains("containers") || !spec["containers"].is_array() || spec["containers"].empty())
    return field_invalid(type, pod, "spec.containers", "FieldValueRequired", "Required value");
  std::set<std::string> names;
  for (size_t i = 0; i < spec["containers"].size(); ++i) {
    json& c = spec["containers"][i];
    const std::string where = "spec.containers[" + std::to_string(i) + "]";
    if (!c.is_object() || c.value("name", std::string()).empty())
      return field_invalid(type, pod, where + ".name", "FieldValueRequired", "Required value");
    if (!names.insert(c["name"].get<std::string>()).second)
      return field_invalid(type, pod, where + ".name", "FieldValueDuplicate",
                           "Duplicate value: \"" + c["name"].get<std::string>() + "\"");
    if (c.value("image", std::string()).empty())
      return field_invalid(type, pod, where + ".image", "FieldValueRequired", "Required value");
    if (!c.contains("imagePullPolicy")) c["imagePullPolicy"] = "IfNotPresent";
    if (!c.contains("terminationMessagePath")) c["terminationMessagePath"] = "/dev/termination-log";
    if (!c.contains("terminationMessagePolicy")) c["terminationMessagePolicy"] = "File";
  }
  const std::string policy = spec.value("restartPolicy", std::string("Always"));
  if (policy != "Always" && policy != "OnFailure" && policy != "Never") {
    return field_invalid(type, pod, "spec.restartPolicy", "FieldValueNotSupported",
                         "Unsupported value: \"" + policy + "\": supported values: \"Always\", \"OnFailure\", \"Never\"");
  }
  spec["restartPolicy"] = policy;
  if (!spec.contains("terminationGracePeriodSeconds")) spec["terminationGracePeriodSeconds"] = 30;
  if (!spec.contains("dnsPolicy")) spec["dnsPolicy"] = "ClusterFirst";
  if (!spec.contains("schedulerName")) spec["schedulerName"] = "default-scheduler";
  if (!spec.contains("enableServiceLinks")) spec["enableServiceLinks"] = true;
  pod["status"] = {{"phase", "Pending"}, {"qosClass", "BestEffort"}};
  if (!spec.value("nodeName", std::string()).empty()) {
    set_condition(pod, condition("PodScheduled", "True"));
  }
  return true;
}

ApiResult<bool> pod_on_update(const ResourceType& type, json& pod, const json& old, const std::string& subresource) {
  if (subresource == "status") return true;
  // Pod specs are immutable but for a few fields; nodeName is set by binding only.
  json a = pod.value("spec", json::object());
  json b = old.value("spec", json::object());
  for (json* s : {&a, &b}) {
    s->erase("activeDeadlineSeconds");
    s->erase("tolerations");
    s->erase("terminationGracePeriodSeconds");
    for (const char* list : {"containers", "initContainers"})
      if (s->contains(list) && (*s)[list].is_array())
        for (auto& c : (*s)[list])
          if (c.is_object()) c.erase("image");
  }
  if (a != b) {
    return field_invalid(type, pod, "spec", "FieldValueForbidden",
                         "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                         "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only "
                         "additions to existing tolerations) or `spec.terminationGracePeriodSeconds`");
  }
  return true;
}

ApiResult<bool> service_on_create(const ResourceType& type, json& svc, ObjectStore& store) {
  json& spec = svc["spec"];
  if (!spec.is_object()) spec = json::object();
  const std::string stype = spec.value("type", std::string("ClusterIP"));
  if (stype != "ClusterIP" && stype != "NodePort" && stype != "LoadBalancer" && stype != "ExternalName") {
    return field_invalid(type, svc, "spec.type", "FieldValueNotSupported",
                         "Unsupported value: \"" + stype +
                             "\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"");
  }
  spec["type"] = stype;
  if (!spec.contains("sessionAffinity")) spec["sessionAffinity"] = "None";
  json& ports = spec["ports"];
  if (!ports.is_array()) ports = json::array();
  for (size_t i = 0; i < ports.size(); ++i) {
    json& p = ports[i];
    if (!p.is_object() || !p.contains("port") || !p["port"].is_number_integer() || p["port"].get<int>() < 1 ||
        p["port"].get<int>() > 65535) {
      return field_invalid(type, svc, "spec.ports[" + std::to_string(i) + "].port", "FieldValueInvalid",
                           "Invalid value: must be between 1 and 65535, inclusive");
    }
    if (!p.contains("protocol")) p["protocol"] = "TCP";
    if (!p.contains("targetPort")) p["targetPort"] = p["port"];
  }
  const std::string ip = spec.value("clusterIP", std::string());
  if (stype == "ExternalName" || ip == "None") return true;
  std::set<std::string> used;
  for (const auto& other : store.list("services", "").items)
    used.insert(other.value("/spec/clusterIP"_json_pointer, std::string()));
  if (!ip.empty()) {
    if (ip.rfind("127.0.2.", 0) != 0)
      return field_invalid(type, svc, "spec.clusterIP", "FieldValueInvalid",
                           "Invalid value: \"" + ip + "\": provided IP is not in the valid range. The range of valid "
                           "IPs is 127.0.2.0/24");
    if (used.count(ip))
      return field_invalid(type, svc, "spec.clusterIP", "FieldValueInvalid",
                           "Invalid value: \"" + ip + "\": provided IP is already allocated");
  } else {
    for (int n = 1; n <= 254; ++n) {
      const std::string candidate = "127.0.2." + std::to_string(n);
      if (!used.count(candidate)) {
        spec["clusterIP"] = candidate;
        break;
      }
    }
    if (spec.value("clusterIP", std::string()).empty())
      return api_error(500, "InternalError", "failed to allocate a serviceIP: range is full (127.0.2.0/24)");
  }
  spec["clusterIPs"] = json::array({spec["clusterIP"]});
  return true;
}

ApiResult<bool> service_on_update(const ResourceType& type, json& svc, const json& old) {
  const std::string was = old.value("/spec/clusterIP"_json_pointer, std::string());
  const std::string now = svc.value("/spec/clusterIP"_json_pointer, std::string());
  if (now.empty() && !was.empty()) {
    svc["spec"]["clusterIP"] = was;
    if (old["spec"].contains("clusterIPs")) svc["spec"]["clusterIPs"] = old["spec"]["clusterIPs"];
  } else if (now != was) {
    return field_invalid(type, svc, "spec.clusterIP", "FieldValueInvalid",
                         "Invalid value: \"" + now + "\": field is immutable");
  }
  return true;
}

}  // namespace

bool pod_ready(const json& pod) {
  for (const auto& c : pod.value("/status/conditions"_json_pointer, json::array()))
    if (c.value("type", std::string()) == "Ready") return c.value("status", std::string()) == "True";
  return false;
}

namespace {

// A Secret's stringData is write-only, as the real API server keeps it: merged into data
// (base64), over a key of the same name, and dropped.
void merge_string_data(const ResourceType& type, json& object) {
  if (!is_core(type, "secrets") || !object.contains("stringData")) return;
  if (object["stringData"].is_object()) {
    json& data = object["data"];
    if (!data.is_object()) data = json::object();
    for (const auto& [key, value] : object["stringData"].items()) {
      if (!value.is_string()) continue;
      const std::string text = value.get<std::string>();
      data[key] = utility::conversions::to_base64(std::vector<unsigned char>(text.begin(), text.end()));
    }
  }
  object.erase("stringData");
}

}  // namespace

ApiResult<bool> on_create(const ResourceType& type, json& object, ObjectStore& store) {
  merge_string_data(type, object);
  if (is_core(type, "pods")) return pod_on_create(type, object);
  if (is_core(type, "services")) return service_on_create(type, object, store);
  if (is_core(type, "namespaces")) {
    object["spec"]["finalizers"] = json::array({"kubernetes"});
    object["status"] = {{"phase", "Active"}};
    auto& labels = object["metadata"]["labels"];
    if (!labels.is_object()) labels = json::object();
    labels["kubernetes.io/metadata.name"] = object["metadata"]["name"];
    return true;
  }
  if (type.group == "apiextensions.k8s.io" && type.resource == "customresourcedefinitions") {
    auto types = resource_types_from_crd(object);
    if (!types.ok()) {
      const std::string name = object.value("/metadata/name"_json_pointer, std::string());
      return invalid_error("CustomResourceDefinition.apiextensions.k8s.io \"" + name +
                           "\" is invalid: " + types.status().message());
    }
    auto& finalizers = object["metadata"]["finalizers"];
    if (!finalizers.is_array()) finalizers = json::array();
    finalizers.push_back("customresourcecleanup.apiextensions.k8s.io");
    object.erase("status");
    return true;
  }
  if (type.group == "policy" && type.resource == "poddisruptionbudgets") {
    const json spec = object.value("spec", json::object());
    if (spec.contains("minAvailable") && spec.contains("maxUnavailable")) {
      return field_invalid(type, object, "spec", "FieldValueInvalid",
                           "Invalid value: minAvailable and maxUnavailable cannot be both set");
    }
    object.erase("status");
    return true;
  }
  return true;
}

ApiResult<bool> on_update(const ResourceType& type, json& object, const json& old, const std::string& subresource) {
  merge_string_data(type, object);
  if (is_core(type, "pods")) return pod_on_update(type, object, old, subresource);
  if (is_core(type, "services") && subresource.empty()) return service_on_update(type, object, old);
  if (is_core(type, "namespaces") && subresource.empty()) {
    // spec.finalizers change through the finalize subresource only; labels keep the name label.
    if (old.contains("spec")) object["spec"] = old["spec"];
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = object["metadata"]["name"];
    return true;
  }
  if (type.group == "apiextensions.k8s.io" && type.resource == "customresourcedefinitions" && subresource.empty()) {
    auto types = resource_types_from_crd(object);
    if (!types.ok()) {
      return invalid_error("CustomResourceDefinition.apiextensions.k8s.io \"" +
                           object.value("/metadata/name"_json_pointer, std::string()) +
                           "\" is invalid: " + types.status().message());
    }
    if (object.value("/spec/group"_json_pointer, std::string()) != old.value("/spec/group"_json_pointer, std::string()) ||
        object.value("/spec/names/plural"_json_pointer, std::string()) !=
            old.value("/spec/names/plural"_json_pointer, std::string())) {
      return field_invalid(type, object, "spec.group", "FieldValueInvalid", "Invalid value: field is immutable");
    }
  }
  return true;
}

ApiResult<json> bind_pod(ApiObjects& api, const std::string& ns, const std::string& name, const json& binding) {
  const std::string node = binding.value("/target/name"_json_pointer, std::string());
  const std::string kind = binding.value("/target/kind"_json_pointer, std::string("Node"));
  if (node.empty() || (kind != "Node" && !kind.empty()))
    return invalid_error("Binding \"" + name + "\" is invalid: target.name: Required value");
  auto pods = api.registry().find("", "v1", "pods");
  return api.store().mutate("pods", ns, name, [&](const json& pod) -> ApiResult<ObjectStore::Mutation> {
    if (pod["metadata"].contains("deletionTimestamp"))
      return conflict_error("Operation cannot be fulfilled on pods/binding \"" + name + "\": pod " + name +
                            " is being deleted, cannot be assigned to a host");
    const std::string bound = pod.value("/spec/nodeName"_json_pointer, std::string());
    if (!bound.empty())
      return conflict_error("Operation cannot be fulfilled on pods/binding \"" + name + "\": pod " + name +
                            " is already assigned to node \"" + bound + "\"");
    json next = pod;
    next["spec"]["nodeName"] = node;
    set_condition(next, condition("PodScheduled", "True"));
    return ObjectStore::Mutation{std::move(next), false};
  });
}

ApiResult<json> pdb_status(const json& pdb, const std::vector<json>& pods) {
  auto selector = LabelSelector::from_json(pdb.value("/spec/selector"_json_pointer, json()));
  if (!selector.ok()) return invalid_error(selector.status().message());
  int expected = 0, healthy = 0;
  for (const auto& p : pods) {
    if (p["metadata"].contains("deletionTimestamp")) continue;
    const std::string phase = p.value("/status/phase"_json_pointer, std::string());
    if (phase == "Succeeded" || phase == "Failed") continue;
    if (!selector->matches(p.value("/metadata/labels"_json_pointer, json()))) continue;
    ++expected;
    if (pod_ready(p)) ++healthy;
  }
  auto scaled = [&](const json& v, bool round_up) -> ApiResult<int> {
    if (v.is_number_integer()) return v.get<int>();
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      if (!s.empty() && s.back() == '%') {
        const double pct = std::atof(s.substr(0, s.size() - 1).c_str());
        const double x = expected * pct / 100.0;
        return static_cast<int>(round_up ? std::ceil(x) : std::floor(x));
      }
    }
    return invalid_error("PodDisruptionBudget: expected an integer or a percentage, got " + v.dump());
  };
  const json spec = pdb.value("spec", json::object());
  int desired = 0;
  if (spec.contains("maxUnavailable")) {
    auto max_unavailable = scaled(spec["maxUnavailable"], true);
    if (!max_unavailable.ok()) return max_unavailable.error();
    desired = std::max(0, expected - *max_unavailable);
  } else if (spec.contains("minAvailable")) {
    auto min_available = scaled(spec["minAvailable"], true);
    if (!min_available.ok()) return min_available.error();
    desired = *min_available;
  }
  const int allowed = std::max(0, healthy - desired);
  json status = pdb.value("status", json::object());
  status["currentHealthy"] = healthy;
  status["desiredHealthy"] = desired;
  status["expectedPods"] = expected;
  status["disruptionsAllowed"] = allowed;
  status["observedGeneration"] = pdb.value("/metadata/generation"_json_pointer, 1);
  json wrapper = {{"status", status}};
  set_condition(wrapper, allowed > 0 ? condition("DisruptionAllowed", "True", "SufficientPods")
                                     : condition("DisruptionAllowed", "False", "InsufficientPods"));
  return wrapper["status"];
}

ApiResult<json> evict_pod(ApiObjects& api, const std::string& ns, const std::string& name, const json& eviction) {
  auto pod = api.store().get("pods", ns, name);
  if (!pod.ok()) return not_found_error("pods \"" + name + "\" not found");
  const json pods = api.store().list("pods", ns).items;
  std::vector<json> matching;
  for (const auto& pdb : api.store().list("policy/poddisruptionbudgets", ns).items) {
    auto selector = LabelSelector::from_json(pdb.value("/spec/selector"_json_pointer, json()));
    if (selector.ok() && !selector->empty() &&
        selector->matches(pod->value("/metadata/labels"_json_pointer, json())))
      matching.push_back(pdb);
  }
  if (matching.size() > 1) {
    return api_error(500, "InternalError",
                     "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.");
  }
  const std::string phase = pod->value("/status/phase"_json_pointer, std::string());
  const bool terminal = phase == "Succeeded" || phase == "Failed";
  if (matching.size() == 1 && !terminal && !(*pod)["metadata"].contains("deletionTimestamp")) {
    auto status = pdb_status(matching[0], pods);
    if (!status.ok()) return status.error();
    const int allowed = (*status)["disruptionsAllowed"].get<int>();
    const int healthy = (*status)["currentHealthy"].get<int>();
    const int desired = (*status)["desiredHealthy"].get<int>();
    // An unready Pod may go while the budget still holds (kube's IfHealthyBudget).
    const bool ok = pod_ready(*pod) ? allowed > 0 : healthy >= desired;
    if (!ok) {
      const std::string pdb_name = matching[0].value("/metadata/name"_json_pointer, std::string());
      json details = {{"causes", json::array({{{"reason", "DisruptionBudget"},
                                               {"message", "The disruption budget " + pdb_name + " needs " +
                                                               std::to_string(desired) + " healthy pods and has " +
                                                               std::to_string(healthy) + " currently"}}})}};
      return api_error(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                       details);
    }
  }
  DeleteOptions options;
  const json del = eviction.value("deleteOptions", json::object());
  if (del.contains("gracePeriodSeconds") && del["gracePeriodSeconds"].is_number_integer())
    options.grace_period_seconds = del["gracePeriodSeconds"].get<int64_t>();
  auto type = api.registry().find("", "v1", "pods");
  auto removed = api.remove(*type, ns, name, options);
  if (!removed.ok()) return removed.error();
  return json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Success"}};
}

}  // namespace hotswap::devcluster
