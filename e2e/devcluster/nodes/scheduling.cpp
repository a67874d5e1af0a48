#include "e2e/devcluster/nodes/scheduling.h"

#include <algorithm>
#include <map>

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

// A quantity as the scheduler needs it for GPUs: a plain integer ("2", 2).
int64_t quantity(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) return std::atoll(v.get<std::string>().c_str());
  return 0;
}

std::string label(const json& node, const std::string& key, bool* present) {
  const json labels = node.value("/metadata/labels"_json_pointer, json::object());
  *present = labels.is_object() && labels.contains(key) && labels[key].is_string();
  return *present ? labels[key].get<std::string>() : std::string();
}

bool expression_holds(const json& node, const json& e) {
  bool present = false;
  const std::string v = label(node, e.value("key", std::string()), &present);
  const std::string op = e.value("operator", std::string());
  std::vector<std::string> values;
  for (const auto& x : e.value("values", json::array()))
    if (x.is_string()) values.push_back(x.get<std::string>());
  const bool in = std::find(values.begin(), values.end(), v) != values.end();
  if (op == "In") return present && in;
  if (op == "NotIn") return !present || !in;
  if (op == "Exists") return present;
  if (op == "DoesNotExist") return !present;
  if ((op == "Gt" || op == "Lt") && present && values.size() == 1) {
    const long long a = std::atoll(v.c_str()), b = std::atoll(values[0].c_str());
    return op == "Gt" ? a > b : a < b;
  }
  return false;
}

bool condition_true(const json& o, const std::string& type) {
  for (const auto& c : o.value("/status/conditions"_json_pointer, json::array()))
    if (c.value("type", std::string()) == type) return c.value("status", std::string()) == "True";
  return false;
}

}  // namespace

int64_t pod_gpu_request(const json& pod) {
  int64_t total = 0;
  for (const auto& c : pod.value("/spec/containers"_json_pointer, json::array())) {
    const json r = c.value("resources", json::object());
    const json limits = r.value("limits", json::object());
    const json requests = r.value("requests", json::object());
    if (limits.contains(kGpuResource)) total += quantity(limits[kGpuResource]);
    else if (requests.contains(kGpuResource)) total += quantity(requests[kGpuResource]);
  }
  return total;
}

bool tolerates(const json& pod, const json& taint) {
  const std::string key = taint.value("key", std::string());
  const std::string value = taint.value("value", std::string());
  const std::string effect = taint.value("effect", std::string());
  for (const auto& t : pod.value("/spec/tolerations"_json_pointer, json::array())) {
    const std::string tkey = t.value("key", std::string());
    const std::string op = t.value("operator", std::string("Equal"));
    const std::string teffect = t.value("effect", std::string());
    if (!teffect.empty() && teffect != effect) continue;
    if (tkey.empty() && op == "Exists") return true;
    if (tkey != key) continue;
    if (op == "Exists") return true;
    if (op == "Equal" && t.value("value", std::string()) == value) return true;
  }
  return false;
}

bool node_matches_selectors(const json& pod, const json& node) {
  const json selector = pod.value("/spec/nodeSelector"_json_pointer, json::object());
  for (const auto& [k, v] : selector.items()) {
    bool present = false;
    if (!v.is_string() || label(node, k, &present) != v.get<std::string>() || !present) return false;
  }
  const json terms = pod.value(
      "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"_json_pointer,
      json());
  if (!terms.is_array() || terms.empty()) return true;
  for (const auto& term : terms) {
    bool all = true;
    for (const auto& e : term.value("matchExpressions", json::array())) all = all && expression_holds(node, e);
    for (const auto& f : term.value("matchFields", json::array())) {
      // The only field Kubernetes supports here: metadata.name.
      json as_label = node;
      as_label["metadata"]["labels"]["metadata.name"] = node["metadata"].value("name", std::string());
      json e = f;
      e["key"] = "metadata.name";
      all = all && expression_holds(as_label, e);
    }
    if (all) return true;
  }
  return false;
}

StatusOr<std::string> choose_node(const json& pod, const std::vector<json>& nodes, const std::vector<json>& bound_pods) {
  std::vector<const json*> n, b;
  for (const auto& x : nodes) n.push_back(&x);
  for (const auto& x : bound_pods) b.push_back(&x);
  return choose_node_among(pod, n, b);
}

StatusOr<std::string> choose_node_among(const json& pod, const std::vector<const json*>& nodes,
                                        const std::vector<const json*>& bound_pods) {
  std::map<std::string, int64_t> gpus_used;
  std::map<std::string, int> pods_on;
  for (const json* p : bound_pods) {
    const std::string n = p->value("/spec/nodeName"_json_pointer, std::string());
    if (n.empty()) continue;
    gpus_used[n] += pod_gpu_request(*p);
    ++pods_on[n];
  }
  const int64_t want = pod_gpu_request(pod);
  std::map<std::string, int> reasons;  // reason -> nodes
  std::string best;
  int best_pods = 0;
  for (const json* node_ptr : nodes) {
    const json& node = *node_ptr;
    const std::string name = node.value("/metadata/name"_json_pointer, std::string());
    if (node.value("/spec/unschedulable"_json_pointer, false)) {
      ++reasons["node(s) were unschedulable"];
      continue;
    }
    if (!condition_true(node, "Ready")) {
      ++reasons["node(s) were not ready"];
      continue;
    }
    bool tainted = false;
    std::string taint_text;
    for (const auto& t : node.value("/spec/taints"_json_pointer, json::array())) {
      const std::string effect = t.value("effect", std::string());
      if ((effect == "NoSchedule" || effect == "NoExecute") && !tolerates(pod, t)) {
        tainted = true;
        taint_text = "node(s) had untolerated taint {" + t.value("key", std::string()) + ": " +
                     t.value("value", std::string()) + "}";
        break;
      }
    }
    if (tainted) {
      ++reasons[taint_text];
      continue;
    }
    if (!node_matches_selectors(pod, node)) {
      ++reasons["node(s) didn't match Pod's node affinity/selector"];
      continue;
    }
    if (want > 0) {
      json alloc = node.value("/status/allocatable"_json_pointer, json::object());
      if (!alloc.contains(kGpuResource)) alloc = node.value("/status/capacity"_json_pointer, json::object());
      const int64_t have = alloc.contains(kGpuResource) ? quantity(alloc[kGpuResource]) : 0;
      if (gpus_used[name] + want > have) {
        ++reasons[std::string("Insufficient ") + kGpuResource];
        continue;
      }
    }
    const int n = pods_on[name];
    if (best.empty() || n < best_pods || (n == best_pods && name < best)) {
      best = name;
      best_pods = n;
    }
  }
  if (!best.empty()) return best;
  std::string text = "0/" + std::to_string(nodes.size()) + " nodes are available";
  std::string parts;
  for (const auto& [reason, count] : reasons) parts += (parts.empty() ? "" : ", ") + std::to_string(count) + " " + reason;
  if (!parts.empty()) text += ": " + parts;
  return failed_precondition(text + ".");
}

}  // namespace hotswap::devcluster
