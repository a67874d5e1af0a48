#include "operator/controllers/deployment_controller.h"

#include <functional>

#include <algorithm>
#include <random>
#include <set>

#include "agent/server/migration_client.h"
#include "common/log.h"
#include "operator/controllers/agent_poller.h"
#include "operator/kube/object.h"

namespace hotswap::controllers {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

// Maintenance windows open without an API event: a deployment with one is looked at this often
// (the agent poller queues those whose load or GPU health it polled); the others at the slower
// period. kHealthPollPeriod: how old an agent's answer may be (x3) for GPU health alone.
constexpr milliseconds kResync{2000};
constexpr milliseconds kIdleResync{30000};
constexpr milliseconds kHealthPollPeriod{5000};

std::string random_token() {
  std::random_device rd;
  std::string t;
  char buf[9];
  for (int i = 0; i < 4; ++i) {
    std::snprintf(buf, sizeof(buf), "%08x", rd());
    t += buf;
  }
  return t;
}

struct Replica {
  kube::ObjectPtr pod;
  std::string name;
  std::string migration;  // the active ModelMigration moving it, if any
  std::string migration_phase;
};

}  // namespace

void DeploymentReconciler::mark_gpu_faulty(const std::string& node, const json& fault, const std::string& pod) {
  auto cached = view_.nodes->get(node);
  if (!cached || !annotation(*cached, kGpuFaultAnnotation).empty()) return;
  const std::string what = fault.value("kind", std::string("fault")) + ": " + fault.value("message", std::string()) +
                           " (reported by " + pod + ")";
  auto r = view_.client->patch(nodes_ref().named(node), kube::PatchType::kMerge,
                               json{{"metadata", {{"annotations", {{kGpuFaultAnnotation, what}}}}}});
  if (!r.ok()) {
    log_warn("marking node " + node + "'s GPU faulty: " + r.status().to_string());
    return;
  }
  log_warn("node " + node + ": GPU marked faulty: " + what);
  view_.record_event(*cached, "Warning", "GpuFault", "GPU marked faulty: " + what);
}

Status DeploymentReconciler::ensure_owned_objects(const DeploymentSpec& spec, const json& md) {
  const std::string key = kube::object_key(spec.ns, spec.name);
  const std::string version = spec.uid + "/" + std::to_string(spec.generation);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (ensured_[key] == version) return Status();
  }
  const auto& c = *view_.client;
  // A Secret made once (the agents and the operator read it): created when missing, kept after.
  auto ensure_secret = [&](const std::string& name, const std::string& what,
                           const std::function<StatusOr<json>()>& make) -> Status {
    auto have = c.get(secrets_ref().in(spec.ns).named(name));
    if (have.ok()) return Status();
    if (!have.error().is_not_found()) return have.status();
    HOTSWAP_ASSIGN_OR_RETURN(json secret, make());
    auto r = c.create(secrets_ref().in(spec.ns), secret);
    if (!r.ok() && !r.error().is_already_exists()) return r.status();
    if (r.ok()) view_.record_event(md, "Normal", "CreatedSecret", "created " + what + " " + name);
    return Status();
  };
  HOTSWAP_RETURN_IF_ERROR(ensure_secret(control_secret_name(spec), "the control token's Secret",
                                        [&]() -> StatusOr<json> { return control_secret(spec, random_token()); }));
  // The migration TLS material; the agents read it from their env.
  if (view_.runtime.migration_tls)
    HOTSWAP_RETURN_IF_ERROR(ensure_secret(migration_tls_secret_name(spec), "the migration TLS Secret",
                                          [&] { return migration_tls_secret(spec); }));
  const json service = replica_service(spec);
  auto svc = c.get(services_ref().in(spec.ns).named(spec.name));
  if (!svc.ok()) {
    if (!svc.error().is_not_found()) return svc.status();
    auto r = c.create(services_ref().in(spec.ns), service);
    if (!r.ok() && !r.error().is_already_exists()) return r.status();
    if (r.ok()) view_.record_event(md, "Normal", "CreatedService", "created Service " + spec.name);
  } else {
    const json& have = svc->value("spec", json::object());
    bool same = have.value("type", std::string("ClusterIP")) == service["spec"]["type"] &&
                have.value("selector", json::object()) == service["spec"]["selector"] &&
                have.value("ports", json::array()).size() == 1 &&
                have["ports"][0].value("port", 0) == service["spec"]["ports"][0]["port"];
    if (!same) {
      json patch = {{"spec", {{"type", service["spec"]["type"]},
                              {"selector", service["spec"]["selector"]},
                              {"ports", service["spec"]["ports"]}}}};
      auto r = c.patch(services_ref().in(spec.ns).named(spec.name), kube::PatchType::kMerge, patch);
      if (!r.ok()) return r.status();
    }
  }
  auto pdb = c.get(pdbs_ref().in(spec.ns).named(spec.name));
  if (!pdb.ok()) {
    if (!pdb.error().is_not_found()) return pdb.status();
    auto r = c.create(pdbs_ref().in(spec.ns), replica_pdb(spec));
    if (!r.ok() && !r.error().is_already_exists()) return r.status();
  }
  HOTSWAP_RETURN_IF_ERROR(ensure_network_policy(spec, md));
  std::lock_guard<std::mutex> lk(mu_);
  ensured_[key] = version;
  return Status();
}

Status DeploymentReconciler::ensure_network_policy(const DeploymentSpec& spec, const json& md) {
  const auto& c = *view_.client;
  const kube::ResourceRef ref = network_policies_ref().in(spec.ns).named(network_policy_name(spec));
  auto have = c.get(ref);
  if (!have.ok() && !have.error().is_not_found()) return have.status();
  const bool ours = have.ok() && have->value("/metadata/labels"_json_pointer, json::object())
                                         .value(kManagedByLabel, std::string()) == kManagedBy;
  if (!view_.runtime.network_policy) {
    // Off (--network-policy=false): the ones this operator made go; a policy of the same name
    // that someone else made is theirs.
    if (!ours) return Status();
    auto r = c.remove(ref);
    if (!r.ok() && !r.error().is_not_found()) return r.status();
    if (r.ok()) view_.record_event(md, "Normal", "DeletedNetworkPolicy", "deleted NetworkPolicy " + ref.name);
    return Status();
  }
  const json policy = replica_network_policy(spec);
  if (!have.ok()) {
    auto r = c.create(network_policies_ref().in(spec.ns), policy);
    if (!r.ok() && !r.error().is_already_exists()) return r.status();
    if (r.ok()) view_.record_event(md, "Normal", "CreatedNetworkPolicy", "created NetworkPolicy " + ref.name);
    return Status();
  }
  if (!ours) {
    view_.record_event(md, "Warning", "NetworkPolicyNotOurs",
                       "NetworkPolicy " + ref.name + " exists and was not made by " + kManagedBy +
                           "; leaving it as it is (the migration ports are fenced only by what it says)");
    return Status();
  }
  if (have->value("spec", json::object()) == policy["spec"]) return Status();
  // Edited by hand, or made by an older operator: the whole spec back as it should be.
  auto r = c.patch(ref, kube::PatchType::kJson,
                   json::array({{{"op", "replace"}, {"path", "/spec"}, {"value", policy["spec"]}}}));
  if (!r.ok()) return r.status();
  view_.record_event(md, "Normal", "UpdatedNetworkPolicy", "restored the spec of NetworkPolicy " + ref.name);
  return Status();
}

StatusOr<ReconcileResult> DeploymentReconciler::reconcile(const std::string& key) {
  kube::ObjectPtr md = view_.deployments->get(key);
  if (!md) {  // deleted: its Pods, Service, PDB, Secret and migrations go by garbage collection
    const auto slash = key.find('/');
    if (view_.metrics && slash != std::string::npos)
      view_.metrics->forget_deployment(key.substr(0, slash), key.substr(slash + 1));
    std::lock_guard<std::mutex> lk(mu_);
    load_.erase(key);
    ensured_.erase(key);
    return ReconcileResult{};
  }
  if (md->contains("/metadata/deletionTimestamp"_json_pointer)) return ReconcileResult{};
  const json old_status = md->value("status", json::object());
  const int64_t now_ms = now_unix_ms();
  const int64_t generation = md->value("/metadata/generation"_json_pointer, int64_t{0});
  auto write_status = [&](json status) -> Status {
    status["observedGeneration"] = generation;
    json merged = old_status;
    for (auto& [k, v] : status.items()) merged[k] = v;
    if (merged == old_status) return Status();
    auto r = view_.client->patch(deployments_ref().in(kube::object_namespace(*md)).named(kube::object_name(*md)).sub("status"),
                                 kube::PatchType::kMerge, json{{"status", status}});
    if (!r.ok()) return Status(r.status().code(), "writing the status: " + r.status().message());
    return Status();
  };
  const json old_conditions = old_status.value("conditions", json::array());
  auto spec_or = parse_deployment(*md);
  if (!spec_or.ok()) {
    view_.record_event(*md, "Warning", "InvalidSpec", spec_or.status().message());
    HOTSWAP_RETURN_IF_ERROR(write_status(
        {{"conditions", json::array({condition("Degraded", true, "InvalidSpec", spec_or.status().message(), generation,
                                               old_conditions, now_ms / 1000)})}}));
    return ReconcileResult{};
  }
  const DeploymentSpec spec = std::move(spec_or).value();
  HOTSWAP_RETURN_IF_ERROR(ensure_owned_objects(spec, *md));

  // The world as the caches show it.
  std::map<std::string, json> active;  // ModelMigration name -> object
  std::map<std::string, std::string> moving;  // replica pod -> the active migration moving it
  int64_t last_load_move = -1;
  // Sources that are leaving: moved by a migration that runs or completed (the Pod cache may
  // not show a completed migration's source deleted yet). They are not counted as replicas.
  std::set<std::string> leaving;
  std::map<std::string, std::pair<int, int64_t>> failures;  // source pod -> failed migrations, the last's end
  for (auto& m : view_.migrations_of(spec.ns, spec.name)) {
    if (m->value("/spec/reason"_json_pointer, std::string()) == "Load") {
      auto t = parse_rfc3339(kube::metadata_field(*m, "creationTimestamp"));
      if (t.ok()) last_load_move = std::max(last_load_move, *t);
    }
    const std::string phase = m->value("/status/phase"_json_pointer, std::string());
    const std::string src = m->value("/status/sourcePod"_json_pointer, m->value("/spec/replica"_json_pointer, std::string()));
    if (phase != "Failed") {
      if (!src.empty()) leaving.insert(src);
    } else if (!src.empty()) {
      auto& f = failures[src];
      ++f.first;
      if (auto t = parse_rfc3339(m->value("/status/completionTime"_json_pointer, std::string())); t.ok())
        f.second = std::max(f.second, *t);
    }
    if (migration_terminal(*m)) continue;
    const std::string n = kube::object_name(*m);
    active[n] = *m;
    if (!src.empty()) moving[src] = n;
    if (m->contains("/spec/target/pod"_json_pointer)) moving[m->value("/spec/target/pod"_json_pointer, std::string())] = n;
  }
  std::vector<Replica> replicas;
  std::vector<kube::ObjectPtr> targets;
  for (auto& p : view_.pods_of(spec.ns, spec.name)) {
    if (pod_terminating(*p) && p->contains("/metadata/deletionTimestamp"_json_pointer)) continue;
    const std::string of = annotation(*p, kMigrationTargetAnnotation);
    if (!of.empty()) {
      if (active.count(of)) {
        targets.push_back(p);
        continue;
      }
      auto mm = view_.migrations->get(spec.ns, of);
      if (!mm || mm->value("/status/phase"_json_pointer, std::string()) != "Completed") {
        // The target of a migration that failed or is gone: it will never serve.
        log_info("modeldeployment " + key + ": deleting " + kube::object_name(*p) + ", the target of ended migration " + of);
        (void)view_.client->remove(pods_ref().in(spec.ns).named(kube::object_name(*p)));
        continue;
      }
    }
    if (p->value("/status/phase"_json_pointer, std::string()) == "Failed" && !moving.count(kube::object_name(*p))) {
      // A replica Pod that failed for good (evicted, its node lost) serves nothing: it is replaced.
      log_warn("modeldeployment " + key + ": replacing failed replica pod " + kube::object_name(*p));
      view_.record_event(*md, "Warning", "ReplicaFailed", "replacing failed replica pod " + kube::object_name(*p));
      (void)view_.client->remove(pods_ref().in(spec.ns).named(kube::object_name(*p)));
      continue;
    }
    Replica r{p, kube::object_name(*p), "", ""};
    if (leaving.count(r.name) && !moving.count(r.name)) continue;  // its migration completed: it goes
    if (auto it = moving.find(r.name); it != moving.end()) {
      r.migration = it->second;
      r.migration_phase = active[it->second].value("/status/phase"_json_pointer, std::string("Pending"));
    }
    replicas.push_back(std::move(r));
  }

  // A new replica serves once its agent has loaded the model; later flips are the migrations'.
  for (auto& r : replicas) {
    if (pod_condition(*r.pod, kServingGate).empty() && pod_condition(*r.pod, "ContainersReady") == "True")
      if (Status st = view_.set_serving(spec.ns, r.name, true, "AgentReady"); !st.ok()) return st;
  }

  // The agents' status, as the poller last fetched it (agent_poller.h); a scale-down that has to
  // choose by open requests asks at once when it has no recent answer.
  const bool watch_load = spec.policy.enabled && spec.policy.triggers.load;
  int64_t staying = 0;
  for (auto& r : replicas) staying += leaving.count(r.name) ? 0 : 1;
  const bool scaling_down = staying > spec.replicas;
  const auto max_age = std::chrono::duration_cast<milliseconds>(3 * (watch_load ? kResync : kHealthPollPeriod));
  std::map<std::string, json> agent_status;
  auto collect = [&] {
    agent_status.clear();
    if (!view_.agents) return;
    for (auto& r : replicas)
      if (auto st = view_.agents->get(spec.ns, r.name, max_age)) agent_status[r.name] = std::move(*st);
  };
  collect();
  if (scaling_down && view_.agents && agent_status.size() < replicas.size()) {
    view_.agents->poll(spec);
    collect();
  }

  policy::Snapshot snap;
  snap.now_unix = now_ms / 1000;
  snap.deployment = spec.policy;
  snap.nodes = view_.node_states();
  snap.migrations = view_.active_migrations();
  snap.last_load_move_unix = last_load_move;
  std::map<std::string, std::string> node_class;
  for (const auto& n : snap.nodes) node_class[n.name] = n.gpu_class;
  const std::string want_model = model_hash(spec), want_layout = kv_layout_hash(spec);
  const int64_t max_seqs = spec.engine.value("maxNumSeqs", int64_t{64});
  for (auto& r : replicas) {
    policy::ReplicaState rs;
    rs.pod = r.name;
    rs.node = pod_node(*r.pod);
    rs.gpu_class = node_class[rs.node];
    rs.serving = pod_condition(*r.pod, "Ready") == "True" && pod_condition(*r.pod, kServingGate) == "True";
    rs.migrating = !r.migration.empty();
    // A replica whose migrations failed is tried again only after a backoff, so that a trigger that
    // keeps holding (a dead node, a target that keeps crashing) does not make one a second.
    if (auto f = failures.find(r.name); f != failures.end() && now_ms / 1000 < f->second.second + retry_backoff_seconds(f->second.first))
      rs.migrating = true;
    rs.model_current = annotation(*r.pod, kModelHashAnnotation) == want_model;
    rs.kv_layout_current = annotation(*r.pod, kKvLayoutAnnotation) == want_layout;
    if (auto it = agent_status.find(r.name); it != agent_status.end()) {
      rs.queue_depth = it->second.value("queue", int64_t{0});
      rs.open_requests = it->second.value("open_requests", int64_t{0});
      rs.utilization = max_seqs > 0 ? double(it->second.value("running", int64_t{0})) / double(max_seqs) : 0;
      const json faults = it->second.value("gpu_faults", json::array());
      rs.gpu_fault = faults.is_array() && !faults.empty();
      if (rs.gpu_fault && !rs.node.empty()) mark_gpu_faulty(rs.node, faults.back(), r.name);
    }
    if (rs.node.empty()) continue;  // not scheduled yet: nothing to move
    // A replica being moved away is not one that stays: a scale-down counts the others.
    if (leaving.count(r.name)) continue;
    snap.replicas.push_back(rs);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    snap.load = load_[key];
  }

  const bool waiting = pods_expected_.pending(key, [&](const std::string& n) { return view_.pods->get(spec.ns, n) != nullptr; }) ||
                       migrations_expected_.pending(key, [&](const std::string& n) {
                         return view_.migrations->get(spec.ns, n) != nullptr;
                       });
  std::set<std::string> removing;
  if (!waiting) {
    const policy::Plan plan = policy::plan_migrations(snap);
    {
      std::lock_guard<std::mutex> lk(mu_);
      load_[key] = plan.load;
    }
    for (const auto& d : plan.migrations) {
      json target = json::object();
      if (!d.target.pod.empty()) target["pod"] = d.target.pod;
      else if (!d.target.node.empty()) target["nodeName"] = d.target.node;
      const std::string reason = policy::reason_name(d.reason);
      const std::string name = spec.name + "-" + ascii_lower(reason) + "-" + random_suffix();
      json mm = {{"apiVersion", "hotswap.io/v1alpha1"},
                 {"kind", "ModelMigration"},
                 {"metadata",
                  {{"name", name},
                   {"namespace", spec.ns},
                   {"labels", {{kDeploymentLabel, spec.name}, {kManagedByLabel, kManagedBy}}},
                   {"annotations", {{"hotswap.io/trigger", d.message}}},
                   {"ownerReferences", json::array({owner_reference(spec)})}}},
                 {"spec", {{"deployment", spec.name}, {"replica", d.pod}, {"mode", d.mode}, {"reason", reason}, {"target", target}}}};
      auto r = view_.client->create(migrations_ref().in(spec.ns), mm);
      if (!r.ok()) return Status(r.status().code(), "creating ModelMigration " + name + ": " + r.status().message());
      migrations_expected_.expect(key, name);
      active[name] = mm;
      log_info("modeldeployment " + key + ": " + reason + " migration " + name + " of " + d.pod + ": " + d.message);
      view_.record_event(*md, "Normal", "Migrating", name + " moves " + d.pod + ": " + d.message);
    }
    // A replica beyond spec.replicas that no migration moves goes directly: ungated first, so the
    // Service stops sending it requests, then deleted (its agent drains on SIGTERM).
    if (scaling_down && active.empty()) {
      std::vector<std::string> extra;
      for (const auto& h : plan.held)
        if (h.reason == policy::Reason::kScaleDown) extra.push_back(h.pod);
      if (!spec.policy.enabled || !spec.policy.triggers.scale_down) {
        std::vector<std::pair<int64_t, std::string>> by_load;
        for (auto& r : replicas) {
          auto it = agent_status.find(r.name);
          by_load.push_back({it == agent_status.end() ? 0 : it->second.value("open_requests", int64_t{0}), r.name});
        }
        std::sort(by_load.begin(), by_load.end());
        for (size_t i = 0; i < replicas.size() - static_cast<size_t>(spec.replicas); ++i) extra.push_back(by_load[i].second);
      }
      for (const auto& name : extra) {
        (void)view_.set_serving(spec.ns, name, false, "ScaledDown");
        auto r = view_.client->remove(pods_ref().in(spec.ns).named(name));
        if (!r.ok() && !r.error().is_not_found()) return r.status();
        removing.insert(name);
        view_.record_event(*md, "Normal", "ScaledDown", "deleted replica " + name);
      }
    }
    // Missing replicas, once no migration runs (a target is a replica-to-be beyond the count).
    const int64_t have = static_cast<int64_t>(replicas.size() - removing.size());
    if (active.empty() && have < spec.replicas) {
      for (int64_t i = have; i < spec.replicas; ++i) {
        const std::string name = spec.name + "-" + random_suffix();
        auto r = view_.client->create(pods_ref().in(spec.ns), replica_pod(spec, view_.runtime, name));
        if (!r.ok()) return Status(r.status().code(), "creating replica pod " + name + ": " + r.status().message());
        pods_expected_.expect(key, name);
        log_info("modeldeployment " + key + ": created replica pod " + name);
      }
    }
  }

  // Status.
  json statuses = json::array();
  int64_t ready = 0, migrating = 0, broken = 0;
  for (auto& r : replicas) {
    if (removing.count(r.name)) continue;
    const json& p = *r.pod;
    std::string state = "Pending";
    if (!pod_node(p).empty() && pod_condition(p, "ContainersReady") != "True") state = "Loading";
    if (pod_condition(p, "Ready") == "True") {
      state = "Serving";
      ++ready;
    }
    if (!r.migration.empty()) {
      ++migrating;
      state = r.migration_phase == "Draining" ? "Draining" : "Migrating";
    }
    const std::string phase = p.value("/status/phase"_json_pointer, std::string());
    if (phase == "Failed") {
      state = "Failed";
      ++broken;
    }
    statuses.push_back({{"pod", r.name}, {"node", pod_node(p)}, {"gpuClass", node_class[pod_node(p)]}, {"state", state}});
  }
  json active_names = json::array();
  for (auto& [n, _] : active) active_names.push_back(n);
  const int64_t count = static_cast<int64_t>(replicas.size() - removing.size());
  const bool available = spec.replicas == 0 || ready >= 1;
  const bool progressing = count != spec.replicas || ready < count || !active.empty();
  json conditions = json::array(
      {condition("Available", available, available ? "ReplicasServing" : "NoReplicaServing",
                 std::to_string(ready) + " of " + std::to_string(spec.replicas) + " replicas serving", generation,
                 old_conditions, now_ms / 1000),
       condition("Progressing", progressing, progressing ? "Reconciling" : "Stable",
                 progressing ? "replicas or migrations are changing" : "every replica serves the current spec",
                 generation, old_conditions, now_ms / 1000),
       condition("Degraded", broken > 0, broken > 0 ? "ReplicaFailed" : "AsExpected",
                 std::to_string(broken) + " replica pod(s) failed", generation, old_conditions, now_ms / 1000),
       condition("Migrating", !active.empty(), active.empty() ? "Idle" : "MigrationsActive",
                 std::to_string(active.size()) + " migration(s) in progress", generation, old_conditions, now_ms / 1000)});
  if (view_.metrics) view_.metrics->set_replicas(spec.ns, spec.name, spec.replicas, ready, migrating);
  HOTSWAP_RETURN_IF_ERROR(write_status({{"replicas", count},
                                        {"readyReplicas", ready},
                                        {"migratingReplicas", migrating},
                                        {"replicaStatuses", statuses},
                                        {"activeMigrations", active_names},
                                        {"conditions", conditions}}));
  // The poller queues the deployments it polled; the rest are looked at now and then.
  return ReconcileResult{!spec.policy.windows.empty() || scaling_down ? kResync : kIdleResync};
}

}  // namespace hotswap::controllers
