#include "operator/controllers/migration_controller.h"

#include <algorithm>
#include <cmath>

#include "agent/server/migration_client.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "operator/kube/object.h"

namespace hotswap::controllers {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kPoll{100};        // following an agent through a phase
constexpr milliseconds kWaitPod{250};     // waiting for the scheduler or the kubelet
constexpr milliseconds kWaitRetry{2000};  // waiting for a target to fit or a slot to free

bool before_switch(const std::string& phase) {
  return phase.empty() || phase == "Pending" || phase == "TargetScheduling" || phase == "TargetLoading" ||
         phase == "PreCopy";
}

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / 1048576.0);
  return buf;
}

// A Pod that will not serve: gone, being deleted, failed, or its agent crashed since it started.
std::string pod_broken(const json& pod) {
  if (pod_terminating(pod)) return "is terminating";
  for (const auto& cs : pod.value("/status/containerStatuses"_json_pointer, json::array())) {
    if (cs.value("restartCount", 0) > 0) return "restarted its agent (restartCount " + std::to_string(cs.value("restartCount", 0)) + ")";
    if (cs.contains("/state/terminated"_json_pointer)) return "has its agent terminated";
  }
  return "";
}

}  // namespace

// One reconcile of one ModelMigration: the object as read, the status being built, and the
// actions of each phase.
struct MigrationReconciler::Step {
  ClusterView& view;
  json mm;
  json status;  // the status this step writes (starts as the object's)
  std::string ns, name;
  MigrationSpec asked;  // the ModelMigration's spec
  DeploymentSpec spec;
  int64_t now_ms = now_unix_ms();

  std::string phase() const { return status.value("phase", std::string()); }
  std::string str(const char* key) const { return status.value(key, std::string()); }

  // Closes the current phase's timing and opens `next`'s.
  void enter(const std::string& next, const std::string& message, int64_t at_ms = -1) {
    if (at_ms < 0) at_ms = now_ms;
    json& timings = status["phaseTimings"];
    if (!timings.is_array()) timings = json::array();
    if (!timings.empty() && !timings.back().contains("end")) {
      json& last = timings.back();
      last["end"] = format_rfc3339_ms(at_ms);
      auto start = parse_rfc3339_ms(last.value("start", std::string()));
      if (start.ok()) {
        last["seconds"] = std::max(0.0, double(at_ms - *start) / 1000.0);
        if (view.metrics) view.metrics->phase_took(last.value("phase", std::string()), last["seconds"].get<double>());
      }
    }
    if (next != "Completed" && next != "Failed")
      timings.push_back({{"phase", next}, {"start", format_rfc3339_ms(at_ms)}});
    log_info("modelmigration " + ns + "/" + name + ": " + (phase().empty() ? "(new)" : phase()) + " -> " + next +
             (message.empty() ? "" : ": " + message));
    status["phase"] = next;
    status["message"] = message;
    if (next == "Completed" || next == "Failed") {
      status["completionTime"] = format_rfc3339(now_ms / 1000);
      if (view.metrics) {
        view.metrics->migration_ended(asked.reason,
                                      next == "Completed" ? "completed" : "failed");
      }
      view.record_event(mm, next == "Completed" ? "Normal" : "Warning", next, message);
    }
  }

  void fail(const std::string& why) {
    // After the switch the target owns the sequences: nothing to roll back.
    if (before_switch(phase())) enter("RollingBack", why);
    else enter("Failed", why);
  }

  StatusOr<json> get_pod(const std::string& pod) const {
    auto r = view.client->get(pods_ref().in(ns).named(pod));
    if (!r.ok()) return r.status();
    return std::move(r).value();
  }
};

StatusOr<ReconcileResult> MigrationReconciler::reconcile(const std::string& key) {
  const auto slash = key.find('/');
  const std::string ns = slash == std::string::npos ? "" : key.substr(0, slash);
  const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
  auto got = view_.client->get(migrations_ref().in(ns).named(name));
  if (!got.ok()) {
    if (got.error().is_not_found()) return ReconcileResult{};
    return got.status();
  }
  Step s{view_, std::move(got).value(), json::object(), ns, name, {}};
  s.status = s.mm.value("status", json::object());
  if (migration_terminal(s.mm)) return ReconcileResult{};
  const json before = s.status;
  ReconcileResult result;
  std::string written_phase = s.phase();  // as the API server has it

  // Fault tests stop the operator between a phase's actions and the status that records them
  // ("migration/enter:P") and just after ("migration/entered:P"); common/failpoint.h.
  auto write = [&]() -> Status {
    if (s.status == before) return Status();
    const std::string entering = s.phase() != written_phase ? s.phase() : "";
    if (!entering.empty()) failpoint("migration/enter:" + entering);
    s.status["observedGeneration"] = s.mm.value("/metadata/generation"_json_pointer, int64_t{0});
    const std::string p = s.phase();
    s.status["conditions"] = json::array(
        {condition("Ready", p == "Completed", p.empty() ? "Pending" : p, s.str("message"),
                   s.status["observedGeneration"].get<int64_t>(), before.value("conditions", json::array()),
                   s.now_ms / 1000)});
    auto r = view_.client->patch(migrations_ref().in(ns).named(name).sub("status"), kube::PatchType::kMerge,
                                 json{{"status", s.status}});
    if (!r.ok()) return Status(r.status().code(), "writing the status: " + r.status().message());
    if (!entering.empty()) {
      written_phase = entering;
      failpoint("migration/entered:" + entering);
    }
    return Status();
  };

  auto asked = parse_migration_spec(s.mm);
  if (!asked.ok()) {
    if (s.phase().empty()) s.status["startTime"] = format_rfc3339(s.now_ms / 1000);
    s.fail(asked.status().message());
  } else {
    s.asked = std::move(asked).value();
    const std::string& deployment = s.asked.deployment;
    auto md = view_.client->get(deployments_ref().in(ns).named(deployment));
    if (!md.ok()) {
      if (!md.error().is_not_found()) return md.status();
      if (s.phase().empty()) s.status["startTime"] = format_rfc3339(s.now_ms / 1000);
      s.fail("ModelDeployment " + deployment + " not found in namespace " + ns);
    } else {
      auto spec = parse_deployment(*md);
      if (!spec.ok()) {
        s.fail("ModelDeployment " + deployment + ": " + spec.status().message());
      } else {
        s.spec = std::move(spec).value();
      }
    }
  }

  // At most a few steps per reconcile: a step that finishes its phase goes on with the next one
  // at once, and each phase change is written before any action that depends on it.
  for (int hops = 0; hops < 8; ++hops) {
    const std::string phase = s.phase();
    if (phase == "Completed" || phase == "Failed") break;
    // The completion timeout, from the deployment, counts from the start.
    if (before_switch(phase) && s.status.contains("startTime")) {
      auto started = parse_rfc3339_ms(s.str("startTime"));
      if (started.ok() && s.now_ms - *started > s.spec.completion_timeout_seconds * 1000) {
        s.fail("timed out after " + std::to_string(s.spec.completion_timeout_seconds) + " s in phase " +
               (phase.empty() ? "Pending" : phase));
        HOTSWAP_RETURN_IF_ERROR(write());
        continue;
      }
    }
    StatusOr<milliseconds> wait = milliseconds(0);
    if (phase.empty() || phase == "Pending") wait = pending(s);
    else if (phase == "TargetScheduling") wait = scheduling(s);
    else if (phase == "TargetLoading") wait = loading(s);
    else if (phase == "PreCopy" || phase == "Switching") wait = precopy(s);
    else if (phase == "Draining") wait = draining(s);
    else if (phase == "RollingBack") wait = rolling_back(s);
    else s.fail("unknown phase '" + phase + "'");
    if (!wait.ok()) {
      (void)write();
      return wait.status();
    }
    HOTSWAP_RETURN_IF_ERROR(write());
    if (s.phase() == phase) {  // still waiting in this phase
      result.requeue_after = *wait;
      break;
    }
  }
  return result;
}

// Pending: choose the source replica and the target; wait while the deployment has no slot.
StatusOr<milliseconds> MigrationReconciler::pending(Step& s) {
  if (!s.status.contains("startTime")) s.status["startTime"] = format_rfc3339(s.now_ms / 1000);
  if (s.phase().empty()) s.enter("Pending", "accepted");
  const MigrationSpec& asked = s.asked;
  const std::string& deployment = asked.deployment;
  // Another migration of this deployment running takes a slot of spec.migration.maxConcurrent.
  int64_t others = 0;
  std::set<std::string> busy;  // replicas some other migration moves, and its targets
  for (auto& m : view_.migrations_of(s.ns, deployment)) {
    if (kube::object_name(*m) == s.name || migration_terminal(*m)) continue;
    const std::string p = m->value("/status/phase"_json_pointer, std::string());
    if (!p.empty() && p != "Pending") ++others;
    busy.insert(m->value("/status/sourcePod"_json_pointer, m->value("/spec/replica"_json_pointer, std::string())));
    busy.insert(m->value("/status/targetPod"_json_pointer, std::string()));
  }
  if (others >= s.spec.policy.max_concurrent) {
    s.status["message"] = "waiting: " + std::to_string(others) + " migration(s) of " + deployment +
                          " in progress (spec.migration.maxConcurrent " +
                          std::to_string(s.spec.policy.max_concurrent) + ")";
    return kWaitRetry;
  }
  // The source: spec.replica, or the first serving replica the selector matches.
  json source;
  const std::string& replica = asked.replica;
  if (!replica.empty()) {
    auto pod = s.get_pod(replica);
    if (!pod.ok()) {
      s.fail("replica " + replica + ": " + pod.status().message());
      return milliseconds(0);
    }
    if (label(*pod, kDeploymentLabel) != deployment) {
      s.fail("pod " + replica + " is not a replica of ModelDeployment " + deployment);
      return milliseconds(0);
    }
    if (busy.count(replica)) {
      s.fail("replica " + replica + " is already being migrated by another ModelMigration");
      return milliseconds(0);
    }
    source = std::move(pod).value();
  } else {
    for (auto& p : view_.pods_of(s.ns, deployment)) {
      if (pod_terminating(*p) || busy.count(kube::object_name(*p)) || pod_condition(*p, kServingGate) != "True" ||
          !annotation(*p, kMigrationTargetAnnotation).empty())
        continue;
      bool match = true;
      for (const auto& [k, v] : asked.selector) match = match && label(*p, k) == v;
      if (match && (source.is_null() || kube::object_name(*p) < kube::object_name(source))) source = *p;
    }
    if (source.is_null()) {
      s.status["message"] = "waiting: no serving replica of " + deployment + " matches spec.selector";
      return kWaitRetry;
    }
  }
  if (std::string why = pod_broken(source); !why.empty()) {
    s.fail("source pod " + kube::object_name(source) + " " + why);
    return milliseconds(0);
  }
  if (pod_ip(source).empty() || pod_node(source).empty()) {
    s.status["message"] = "waiting: source pod " + kube::object_name(source) + " has no IP yet";
    return kWaitPod;
  }
  const std::string source_name = kube::object_name(source);
  s.status["sourcePod"] = source_name;
  s.status["sourceNode"] = pod_node(source);
  const std::string mode = asked.mode.empty() ? s.spec.policy.mode : asked.mode;
  s.status["mode"] = mode;
  if (!s.status.contains("agentMigrationId"))
    s.status["agentMigrationId"] = s.name + "-" + kube::metadata_field(s.mm, "uid").substr(0, 8);

  if (!asked.target_pod.empty()) {  // a scale-down: into a running replica
    const std::string& into = asked.target_pod;
    auto pod = s.get_pod(into);
    if (!pod.ok() || label(*pod, kDeploymentLabel) != deployment || into == source_name) {
      s.fail("spec.target.pod " + into + " is not another replica of ModelDeployment " + deployment);
      return milliseconds(0);
    }
    s.status["targetPod"] = into;
    s.status["targetNode"] = pod_node(*pod);
    s.status["targetGpuClass"] = "";
    s.enter("TargetLoading", "moving the sequences of " + source_name + " into the running replica " + into);
    return milliseconds(0);
  }

  policy::Snapshot snap;
  snap.now_unix = s.now_ms / 1000;
  snap.deployment = s.spec.policy;
  snap.nodes = view_.node_states();
  for (auto& a : view_.active_migrations())
    if (a.source_pod != source_name) snap.migrations.push_back(a);
  policy::ReplicaState from;
  from.pod = source_name;
  from.node = pod_node(source);
  for (const auto& n : snap.nodes)
    if (n.name == from.node) from.gpu_class = n.gpu_class;
  policy::TargetConstraints c;
  c.node = asked.target_node;
  c.node_selector = asked.target_node_selector;
  if (!asked.target_gpu_class.empty()) c.gpu_classes = {asked.target_gpu_class};
  // A load move may stay on its node (another GPU of another class); every other reason leaves it.
  c.avoid_source_node = asked.reason != "Load";
  auto chosen = policy::choose_target(snap, from, c);
  if (!chosen.ok()) {
    s.status["message"] = "waiting for a target: " + chosen.status().message();
    return kWaitRetry;
  }
  s.status["targetNode"] = chosen->node;
  s.status["targetGpuClass"] = chosen->gpu_class;
  s.status["targetPod"] = deployment + "-" + random_suffix();
  s.enter("TargetScheduling", "target node " + chosen->node + " (" + chosen->gpu_class + ")");
  return milliseconds(0);
}

// TargetScheduling: the target Pod exists and is bound to the chosen node.
StatusOr<milliseconds> MigrationReconciler::scheduling(Step& s) {
  const std::string target = s.str("targetPod");
  auto pod = s.get_pod(target);
  if (!pod.ok()) {
    if (pod.status().code() != StatusCode::kNotFound) return pod.status();
    json desired = replica_pod(s.spec, view_.runtime, target, s.str("targetNode"), s.name);
    auto r = view_.client->create(pods_ref().in(s.ns), desired);
    if (!r.ok() && !r.error().is_already_exists()) {
      s.fail("creating the target pod " + target + ": " + r.status().message());
      return milliseconds(0);
    }
    failpoint("migration/target-pod-created");
    s.status["message"] = "created the target pod " + target + " on node " + s.str("targetNode");
    return kWaitPod;
  }
  if (std::string why = pod_broken(*pod); !why.empty()) {
    s.fail("target pod " + target + " " + why);
    return milliseconds(0);
  }
  if (pod_node(*pod).empty()) {
    std::string why;
    for (const auto& c : pod->value("/status/conditions"_json_pointer, json::array()))
      if (c.value("type", std::string()) == "PodScheduled") why = c.value("message", std::string());
    s.status["message"] = "waiting for the scheduler to bind " + target + (why.empty() ? "" : ": " + why);
    return kWaitPod;
  }
  s.enter("TargetLoading", "target pod " + target + " bound to " + pod_node(*pod) + "; loading the model");
  return milliseconds(0);
}

// TargetLoading: once the target agent is ready, prepare it and start the source.
StatusOr<milliseconds> MigrationReconciler::loading(Step& s) {
  const std::string source_name = s.str("sourcePod"), target_name = s.str("targetPod");
  auto source = s.get_pod(source_name);
  if (!source.ok()) {
    if (source.status().code() != StatusCode::kNotFound) return source.status();
    s.fail("the source pod " + source_name + " is gone");
    return milliseconds(0);
  }
  auto target = s.get_pod(target_name);
  if (!target.ok()) {
    if (target.status().code() != StatusCode::kNotFound) return target.status();
    s.fail("the target pod " + target_name + " is gone");
    return milliseconds(0);
  }
  for (const auto& [pod, role] : {std::pair{&*source, "source"}, std::pair{&*target, "target"}}) {
    if (std::string why = pod_broken(*pod); !why.empty()) {
      s.fail(std::string(role) + " pod " + kube::object_name(*pod) + " " + why);
      return milliseconds(0);
    }
  }
  if (pod_condition(*target, "ContainersReady") != "True" || agent_url(*target).empty()) {
    s.status["message"] = "waiting for the target agent " + target_name + " to load the model";
    return kWaitPod;
  }
  auto token = view_.control_token(s.ns, s.spec.name);
  if (!token.ok()) return token.status();
  const std::string id = s.str("agentMigrationId");
  // A start that happened before an operator restart: the source knows the id.
  auto known = agent::migration_state(agent_url(*source), *token, id);
  if (!known.ok() && known.status().code() != StatusCode::kNotFound) {
    s.status["message"] = "waiting for the source agent: " + known.status().message();
    return kWaitPod;
  }
  if (!known.ok()) {
    agent::MigrationCall call;
    call.source = agent_url(*source);
    call.target = agent_url(*target);
    call.token = *token;
    call.id = id;
    call.mode = ascii_lower(s.str("mode"));
    call.downtime_budget_ms = static_cast<double>(s.spec.downtime_budget_ms);
    call.bandwidth_cap_bytes_per_s = s.spec.bandwidth_limit_bytes_per_s;
    call.transport = "auto";
    auto started = agent::start_migration(call);
    if (!started.ok()) {
      s.fail("starting the migration on the agents: " + started.status().message());
      return milliseconds(0);
    }
    s.status["transport"] = started->transport;
  }
  s.enter("PreCopy", s.str("mode") == "Recompute"
                         ? "the source agent sends its sequences' token ids to " + target_name + " to recompute"
                         : "the source agent streams its KV cache to " + target_name);
  return milliseconds(0);
}

// PreCopy (and the Switching the agents do between themselves): follow the source agent.
StatusOr<milliseconds> MigrationReconciler::precopy(Step& s) {
  const std::string source_name = s.str("sourcePod"), target_name = s.str("targetPod");
  auto source = s.get_pod(source_name);
  if (!source.ok() || !pod_broken(*source).empty()) {
    if (!source.ok() && source.status().code() != StatusCode::kNotFound) return source.status();
    s.fail("the source pod " + source_name + (source.ok() ? " " + pod_broken(*source) : " is gone"));
    return milliseconds(0);
  }
  auto token = view_.control_token(s.ns, s.spec.name);
  if (!token.ok()) return token.status();
  auto st = agent::migration_state(agent_url(*source), *token, s.str("agentMigrationId"));
  if (!st.ok()) {
    if (st.status().code() == StatusCode::kNotFound) {
      s.fail("the source agent no longer knows migration " + s.str("agentMigrationId") + " (did it restart?)");
      return milliseconds(0);
    }
    s.status["message"] = "cannot reach the source agent: " + st.status().message();
    return kWaitPod;
  }
  const std::string agent_phase = st->value("phase", std::string());
  if (agent_phase == "PreCopy" || agent_phase == "Pending") {
    // The target may die while the source streams to it: the source then fails on its own, but
    // not before its transfer timeout; roll back at once.
    auto target = s.get_pod(target_name);
    if (!target.ok() || !pod_broken(*target).empty()) {
      s.fail("the target pod " + target_name + (target.ok() ? " " + pod_broken(*target) : " is gone"));
      return milliseconds(0);
    }
    const double sent = st->value("/transfer/bytes_sent"_json_pointer, 0.0);
    s.status["progress"] = mib(sent) + " sent";
    s.status["bytes"] = static_cast<int64_t>(sent);
    return kPoll;
  }
  if (agent_phase == "Draining" || agent_phase == "Completed") {
    const json report = st->value("report", json::object());
    const double switch_ms = report.value("switch_ms", 0.0);
    s.status["bytes"] = report.value("bytes", int64_t{0});
    s.status["rounds"] = report.value("rounds", json::array()).size();
    s.status["downtimeMs"] = std::round(switch_ms * 1000.0) / 1000.0;
    s.status["progress"] = std::to_string(report.value("sequences", 0)) + " seqs, " +
                           mib(report.value("bytes", 0.0)) + ", " + std::to_string(s.status["rounds"].get<size_t>()) +
                           " rounds";
    if (st->contains("transport")) s.status["transport"] = (*st)["transport"];
    if (view_.metrics) view_.metrics->downtime(switch_ms / 1000.0);
    // The switch happened within the agents; its timing is the source's pause.
    const int64_t switch_start = s.now_ms - static_cast<int64_t>(std::ceil(switch_ms));
    if (s.phase() == "PreCopy") s.enter("Switching", "the agents switched", switch_start);
    // New traffic: the target's gate first, then the source's.
    HOTSWAP_RETURN_IF_ERROR(view_.set_serving(s.ns, target_name, true, "MigrationTarget"));
    failpoint("migration/target-gated");
    HOTSWAP_RETURN_IF_ERROR(view_.set_serving(s.ns, source_name, false, "MigratedAway"));
    s.enter("Draining", "the target serves; the source relays the streams it still holds");
    return milliseconds(0);
  }
  // RolledBack or Failed on the agent: the source kept (or got back) its sequences.
  s.fail("the agents rolled the migration back: " +
         st->value("error", st->value("/report/error"_json_pointer, std::string("(no reason given)"))));
  return milliseconds(0);
}

// Draining: once the source relays nothing, the target is a plain replica and the source goes.
StatusOr<milliseconds> MigrationReconciler::draining(Step& s) {
  const std::string source_name = s.str("sourcePod"), target_name = s.str("targetPod");
  auto source = s.get_pod(source_name);
  bool done = !source.ok() || pod_terminating(*source);
  if (!source.ok() && source.status().code() != StatusCode::kNotFound) return source.status();
  std::string note = "the source relays no stream any more";
  if (!done) {
    auto token = view_.control_token(s.ns, s.spec.name);
    if (!token.ok()) return token.status();
    auto st = agent::migration_state(agent_url(*source), *token, s.str("agentMigrationId"));
    if (!st.ok()) {
      done = st.status().code() == StatusCode::kNotFound;  // it restarted: it holds no client
      if (!done) {
        s.status["message"] = "cannot reach the source agent: " + st.status().message();
        return kWaitPod;
      }
    } else if (st->value("phase", std::string()) == "Completed") {
      done = true;
    } else {
      s.status["message"] = "the source relays " + std::to_string(st->value("relays_open", 0)) + " stream(s)";
    }
    // Streams a client never comes back for must not hold the source for ever.
    const auto& timings = s.status.value("phaseTimings", json::array());
    if (!done && !timings.empty()) {
      auto since = parse_rfc3339_ms(timings.back().value("start", std::string()));
      if (since.ok() && s.now_ms - *since > s.spec.completion_timeout_seconds * 1000) {
        done = true;
        note = "draining timed out after " + std::to_string(s.spec.completion_timeout_seconds) +
               " s; the streams left can resume on the target with Last-Event-ID";
      }
    }
  }
  if (!done) return kPoll;
  auto target = s.get_pod(target_name);
  if (target.ok() && !annotation(*target, kMigrationTargetAnnotation).empty()) {
    auto r = view_.client->patch(pods_ref().in(s.ns).named(target_name), kube::PatchType::kMerge,
                                 json{{"metadata", {{"annotations", {{kMigrationTargetAnnotation, nullptr}}}}}});
    if (!r.ok()) return Status(r.status().code(), "unpinning the target pod: " + r.status().message());
  }
  if (source.ok() && !pod_terminating(*source)) {
    auto r = view_.client->remove(pods_ref().in(s.ns).named(source_name));
    if (!r.ok() && !r.error().is_not_found())
      return Status(r.status().code(), "deleting the source pod: " + r.status().message());
  }
  s.enter("Completed", note + "; deleted the source pod " + source_name);
  return milliseconds(0);
}

// RollingBack: the source still serves; end the target's side and remove its Pod.
StatusOr<milliseconds> MigrationReconciler::rolling_back(Step& s) {
  const std::string target_name = s.str("targetPod");
  const std::string why = s.str("message");
  const bool existing_replica = !s.asked.target_pod.empty();
  if (!target_name.empty()) {
    auto target = s.get_pod(target_name);
    if (target.ok()) {
      if (auto token = view_.control_token(s.ns, s.spec.name); token.ok() && !agent_url(*target).empty())
        (void)agent::control_call(agent_url(*target), *token, "POST",
                                  "/control/v1/migrations/" + s.str("agentMigrationId") + "/abort", json::object());
      if (!existing_replica && !pod_terminating(*target)) {
        auto r = view_.client->remove(pods_ref().in(s.ns).named(target_name));
        if (!r.ok() && !r.error().is_not_found())
          return Status(r.status().code(), "deleting the target pod: " + r.status().message());
      }
    }
  }
  s.enter("Failed", why.empty() ? "rolled back" : why + " (rolled back: the source keeps serving)");
  return milliseconds(0);
}

}  // namespace hotswap::controllers
