#include "operator/controllers/cluster_view.h"

#include <ctime>

#include "common/log.h"
#include "operator/kube/object.h"

namespace hotswap::controllers {

using nlohmann::json;

void Expectations::expect(const std::string& owner, const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  expected_[owner][name] = Clock::now() + ttl_;
}

bool Expectations::pending(const std::string& owner, const std::function<bool(const std::string&)>& seen) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = expected_.find(owner);
  if (it == expected_.end()) return false;
  const auto now = Clock::now();
  for (auto e = it->second.begin(); e != it->second.end();) {
    if (e->second < now || seen(e->first)) e = it->second.erase(e);
    else ++e;
  }
  if (it->second.empty()) {
    expected_.erase(it);
    return false;
  }
  return true;
}

bool migration_terminal(const json& mm) {
  const std::string phase = mm.value("/status/phase"_json_pointer, std::string());
  return phase == "Completed" || phase == "Failed";
}

std::string agent_url(const json& pod) {
  const std::string ip = pod_ip(pod);
  return ip.empty() ? "" : "http://" + ip + ":" + std::to_string(kAgentPort);
}

std::vector<kube::ObjectPtr> ClusterView::pods_of(const std::string& ns, const std::string& deployment) const {
  std::vector<kube::ObjectPtr> out;
  for (auto& p : pods->list(ns))
    if (label(*p, kDeploymentLabel) == deployment) out.push_back(p);
  return out;
}

std::vector<kube::ObjectPtr> ClusterView::migrations_of(const std::string& ns, const std::string& deployment) const {
  std::vector<kube::ObjectPtr> out;
  for (auto& m : migrations->list(ns))
    if (m->value("/spec/deployment"_json_pointer, std::string()) == deployment) out.push_back(m);
  return out;
}

std::vector<policy::ActiveMigration> ClusterView::active_migrations() const {
  std::vector<policy::ActiveMigration> out;
  for (auto& m : migrations->list()) {
    if (migration_terminal(*m)) continue;
    policy::ActiveMigration a;
    a.deployment = m->value("/spec/deployment"_json_pointer, std::string());
    a.source_pod = m->value("/status/sourcePod"_json_pointer, m->value("/spec/replica"_json_pointer, std::string()));
    a.source_node = m->value("/status/sourceNode"_json_pointer, std::string());
    a.target_node = m->value("/status/targetNode"_json_pointer, std::string());
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<policy::NodeState> ClusterView::node_states() const {
  std::map<std::string, int64_t> used;
  for (auto& p : pods->list()) {
    if (pod_terminating(*p)) continue;
    std::string node = pod_node(*p);
    if (node.empty()) node = p->value("/spec/nodeSelector"_json_pointer, json::object()).value(kHostnameLabel, "");
    if (!node.empty()) used[node] += pod_gpus(*p);
  }
  std::vector<policy::NodeState> out;
  for (auto& n : nodes->list()) {
    policy::NodeState s = node_state(*n);
    s.gpus_used = used[s.name];
    out.push_back(std::move(s));
  }
  return out;
}

StatusOr<std::string> ClusterView::control_token(const std::string& ns, const std::string& deployment) const {
  const std::string name = deployment + "-control-token";
  const std::string key = kube::object_key(ns, name);
  {
    std::lock_guard<std::mutex> lk(token_mu_);
    if (auto it = tokens_.find(key); it != tokens_.end()) return it->second;
  }
  auto secret = client->get(secrets_ref().in(ns).named(name));
  if (!secret.ok()) return Status(secret.status().code(), "the control token's Secret: " + secret.status().message());
  HOTSWAP_ASSIGN_OR_RETURN(std::string token, token_from_secret(*secret));
  std::lock_guard<std::mutex> lk(token_mu_);
  tokens_[key] = token;
  return token;
}

void ClusterView::record_event(const json& object, const std::string& type, const std::string& reason,
                               const std::string& message) const {
  const std::string ns = kube::object_namespace(object).empty() ? "default" : kube::object_namespace(object);
  const std::string now = format_rfc3339(static_cast<int64_t>(std::time(nullptr)));
  json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", kube::object_name(object) + "." + random_suffix(10)}, {"namespace", ns}}},
                {"involvedObject",
                 {{"apiVersion", object.value("apiVersion", std::string())},
                  {"kind", object.value("kind", std::string())},
                  {"name", kube::object_name(object)},
                  {"namespace", ns},
                  {"uid", kube::metadata_field(object, "uid")}}},
                {"type", type},
                {"reason", reason},
                {"message", message},
                {"source", {{"component", kManagedBy}}},
                {"firstTimestamp", now},
                {"lastTimestamp", now},
                {"count", 1}};
  auto r = client->create(events_ref().in(ns), event);
  if (!r.ok()) log_warn("event " + reason + " on " + kube::object_key(object) + ": " + r.status().to_string());
}

Status ClusterView::set_serving(const std::string& ns, const std::string& pod, bool serving,
                                const std::string& reason) const {
  auto r = client->patch(pods_ref().in(ns).named(pod).sub("status"), kube::PatchType::kStrategicMerge,
                         serving_gate_patch(serving, reason));
  if (!r.ok()) return Status(r.status().code(), "setting " + std::string(kServingGate) + "=" +
                                                    (serving ? "True" : "False") + " on pod " + pod + ": " +
                                                    r.status().message());
  return Status();
}

}  // namespace hotswap::controllers
