// policy.h's rules. plan_migrations() works in three steps: the load memory of every replica,
// the one trigger (the most urgent that holds and is on) of every replica not migrating, then
// the candidates in order of urgency and name, each either decided (taking a migration slot, a
// per-node slot on its source and target, and its target's GPU from what the later ones see) or
// held with the reason.
#include "operator/policy/policy.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <tuple>

namespace hotswap::policy {

const char* reason_name(Reason reason) {
  switch (reason) {
    case Reason::kGpuHealth:
      return "GpuHealth";
    case Reason::kMaintenance:
      return "Maintenance";
    case Reason::kSchedule:
      return "Schedule";
    case Reason::kVersion:
      return "Version";
    case Reason::kScaleDown:
      return "ScaleDown";
    case Reason::kLoad:
      return "Load";
  }
  return "Unknown";
}

namespace {

// What the decisions made so far in one plan have taken from what later decisions see.
struct PlanUsage {
  int64_t decided = 0;
  std::map<std::string, int64_t> node_migrations;  // by node: decisions with it as source or target
  std::map<std::string, int64_t> gpus;             // by node: GPUs the decided new Pods take
  std::string load_move_pod;                       // the pod of this plan's Load decision, if any
};

// "2026-12-02T10:00:00Z" (days to civil date: H. Hinnant's algorithm, no libc time zone state).
std::string utc_time(int64_t unix_s) {
  int64_t days = unix_s / 86400, secs = unix_s % 86400;
  if (secs < 0) secs += 86400, days -= 1;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ", static_cast<long long>(year),
                static_cast<long long>(month), static_cast<long long>(day), static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return buf;
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string class_label(const std::string& gpu_class) {
  return gpu_class.empty() ? "(none)" : gpu_class;
}

// "1 migration of 1 allowed is active", "2 migrations of 3 allowed are active"
std::string migrations_of(int64_t n, int64_t allowed) {
  return std::to_string(n) + (n == 1 ? " migration" : " migrations") + " of " + std::to_string(allowed) + " allowed";
}

const NodeState* find_node(const Snapshot& s, const std::string& name) {
  for (const auto& n : s.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

bool selector_matches(const std::map<std::string, std::string>& selector,
                      const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// The window that covers `node` now or opens on it within window_lead_seconds: of several, the
// one that starts first.
const MaintenanceWindow* window_on(const Snapshot& s, const NodeState& node) {
  const MaintenanceWindow* best = nullptr;
  for (const auto& w : s.deployment.windows) {
    if (!selector_matches(w.node_selector, node.labels)) continue;
    if (s.now_unix < w.start_unix - s.deployment.window_lead_seconds) continue;
    if (s.now_unix >= w.start_unix + w.duration_seconds) continue;
    if (!best || w.start_unix < best->start_unix) best = &w;
  }
  return best;
}

// "2026-12-02T10:00:00Z (60 min)"
std::string window_name(const MaintenanceWindow& w) {
  const int64_t d = w.duration_seconds;
  return utc_time(w.start_unix) + " (" + (d % 60 == 0 ? std::to_string(d / 60) + " min" : std::to_string(d) + " s") +
         ")";
}

// "opens in 240 s" or "is open, closes in 1800 s"
std::string window_when(const Snapshot& s, const MaintenanceWindow& w) {
  if (s.now_unix < w.start_unix) return "opens in " + std::to_string(w.start_unix - s.now_unix) + " s";
  return "is open, closes in " + std::to_string(w.start_unix + w.duration_seconds - s.now_unix) + " s";
}

// Migrations with `node` as source or target: every deployment's active ones and this plan's.
int64_t node_migrations(const Snapshot& s, const PlanUsage& usage, const std::string& node) {
  int64_t n = 0;
  for (const auto& m : s.migrations)
    if (m.source_node == node || m.target_node == node) ++n;
  auto it = usage.node_migrations.find(node);
  return n + (it == usage.node_migrations.end() ? 0 : it->second);
}

int64_t active_of_deployment(const Snapshot& s) {
  int64_t n = 0;
  for (const auto& m : s.migrations)
    if (m.deployment == s.deployment.name) ++n;
  return n;
}

// Why `node` cannot take a new replica from `source`; empty when it can.
std::vector<std::string> refusals(const Snapshot& s, const PlanUsage& usage, const ReplicaState& source,
                                  const TargetConstraints& c, const NodeState& node) {
  if (!c.node.empty() && node.name != c.node) return {"not the requested node " + c.node};
  const DeploymentPolicy& d = s.deployment;
  std::vector<std::string> why;
  if (!node.ready) why.push_back("not Ready");
  if (node.unschedulable) why.push_back("cordoned");
  if (node.no_execute) why.push_back("tainted NoExecute");
  if (node.gpu_faulty) why.push_back("GPU marked faulty");
  auto taken = usage.gpus.find(node.name);
  const int64_t used = node.gpus_used + (taken == usage.gpus.end() ? 0 : taken->second);
  if (used >= node.gpus)
    why.push_back("no free GPU (" + std::to_string(used) + "/" + std::to_string(node.gpus) + " used)");
  if (!d.gpu_classes.empty() && !contains(d.gpu_classes, node.gpu_class))
    why.push_back("GPU class " + class_label(node.gpu_class) + " not allowed");
  if (!c.gpu_classes.empty() && !contains(c.gpu_classes, node.gpu_class))
    why.push_back("GPU class " + class_label(node.gpu_class) + " not one of " + join(c.gpu_classes, ", "));
  for (const auto& [k, v] : c.node_selector) {
    auto it = node.labels.find(k);
    if (it == node.labels.end() || it->second != v) why.push_back("no label " + k + "=" + v);
  }
  if (const MaintenanceWindow* w = window_on(s, node))
    why.push_back("maintenance window " + window_name(*w) + " " + window_when(s, *w));
  if (c.avoid_source_node && node.name == source.node) why.push_back("the source's node");
  const int64_t on_node = node_migrations(s, usage, node.name);
  if (on_node >= d.max_concurrent_per_node)
    why.push_back(migrations_of(on_node, d.max_concurrent_per_node) + " per node");
  return why;
}

StatusOr<Target> choose_target_in(const Snapshot& s, const PlanUsage& usage, const ReplicaState& source,
                                  const TargetConstraints& c) {
  if (!c.node.empty() && !find_node(s, c.node))
    return failed_precondition("no node fits: node " + c.node + " not found");
  if (s.nodes.empty()) return failed_precondition("no node fits: there are no nodes");
  // Order of fitting nodes: the class's place in c.gpu_classes; without classes given, the
  // source's own class first (a like-for-like move keeps its speed and cost), then any other
  // allowed one. Then the fewest GPUs used (spreads replicas), then the name (deterministic).
  using Rank = std::tuple<size_t, int64_t, std::string>;
  std::optional<Rank> best;
  const NodeState* best_node = nullptr;
  std::vector<const NodeState*> by_name;
  for (const auto& n : s.nodes) by_name.push_back(&n);
  std::sort(by_name.begin(), by_name.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<std::string> why_not;
  for (const NodeState* n : by_name) {
    std::vector<std::string> why = refusals(s, usage, source, c, *n);
    if (!why.empty()) {
      why_not.push_back(n->name + ": " + join(why, ", "));
      continue;
    }
    const size_t class_rank =
        c.gpu_classes.empty()
            ? (n->gpu_class == source.gpu_class ? 0 : 1)
            : static_cast<size_t>(std::find(c.gpu_classes.begin(), c.gpu_classes.end(), n->gpu_class) -
                                  c.gpu_classes.begin());
    auto taken = usage.gpus.find(n->name);
    Rank rank{class_rank, n->gpus_used + (taken == usage.gpus.end() ? 0 : taken->second), n->name};
    if (!best || rank < *best) best = rank, best_node = n;
  }
  if (!best_node) return failed_precondition("no node fits: " + join(why_not, "; "));
  return Target{best_node->name, best_node->gpu_class, ""};
}

// A KV cache moves only between replicas of one layout; a new Pod runs the spec's layout. So a
// replica whose layout is not the spec's (Version, or any other trigger on such a replica)
// recomputes; so does a scale-down between replicas of different layouts.
std::string mode_for(const DeploymentPolicy& d, bool source_layout_current, bool target_layout_current) {
  return source_layout_current == target_layout_current ? d.mode : std::string("Recompute");
}

bool load_high(const LoadPolicy& p, const ReplicaState& r) {
  return r.queue_depth >= p.queue_depth_high || r.utilization >= p.utilization_high;
}
bool load_low(const LoadPolicy& p, const ReplicaState& r) {
  return r.queue_depth <= p.queue_depth_low && r.utilization <= p.utilization_low;
}

LoadMemory next_load_memory(const Snapshot& s, const ReplicaState& r) {
  LoadMemory next;
  if (!s.deployment.enabled || !s.deployment.triggers.load) return next;
  LoadMemory prev;
  if (auto it = s.load.find(r.pod); it != s.load.end()) prev = it->second;
  const LoadPolicy& p = s.deployment.load;
  if (load_high(p, r)) next.high_since_unix = prev.high_since_unix >= 0 ? prev.high_since_unix : s.now_unix;
  if (load_low(p, r)) next.low_since_unix = prev.low_since_unix >= 0 ? prev.low_since_unix : s.now_unix;
  return next;
}

// One replica's most urgent trigger, with what its target must satisfy.
struct Candidate {
  const ReplicaState* replica = nullptr;
  Reason reason = Reason::kLoad;
  std::string message;
  TargetConstraints constraints;
};

std::optional<Candidate> load_candidate(const Snapshot& s, const ReplicaState& r, const LoadMemory& m) {
  const LoadPolicy& p = s.deployment.load;
  const int64_t now = s.now_unix;
  Candidate c{&r, Reason::kLoad, "", {}};
  c.constraints.avoid_source_node = false;  // only the class matters for a load move
  if (m.high_since_unix >= 0 && now - m.high_since_unix >= p.sustain_seconds && !p.faster_classes.empty() &&
      !contains(p.faster_classes, r.gpu_class)) {
    const std::string for_s = " for " + std::to_string(now - m.high_since_unix) + " s";
    c.message =
        r.queue_depth >= p.queue_depth_high
            ? "queue depth " + std::to_string(r.queue_depth) + " >= " + std::to_string(p.queue_depth_high) + for_s
            : "utilization " + fixed2(r.utilization) + " >= " + fixed2(p.utilization_high) + for_s;
    c.constraints.gpu_classes = p.faster_classes;
    return c;
  }
  if (m.low_since_unix >= 0 && now - m.low_since_unix >= p.sustain_seconds && contains(p.faster_classes, r.gpu_class)) {
    // Its own class is no move, even where a list names it as both faster and cheaper.
    for (const auto& cls : p.cheaper_classes)
      if (cls != r.gpu_class) c.constraints.gpu_classes.push_back(cls);
    if (c.constraints.gpu_classes.empty()) return std::nullopt;
    c.message = "queue depth " + std::to_string(r.queue_depth) + " <= " + std::to_string(p.queue_depth_low) +
                " and utilization " + fixed2(r.utilization) + " <= " + fixed2(p.utilization_low) + " for " +
                std::to_string(now - m.low_since_unix) + " s";
    return c;
  }
  return std::nullopt;
}

// The replicas a scale-down removes: spec.replicas fewer than there are. The sources of this
// deployment's active migrations count first, as already leaving (a scale-down in flight must
// not pick another; one that is replaced only delays the next pick); replicas receiving a
// migration count last; then the fewest open requests, then the name.
std::set<std::string> scale_down_extras(const Snapshot& s) {
  const int64_t extra = static_cast<int64_t>(s.replicas.size()) - s.deployment.replicas;
  if (extra <= 0) return {};
  std::set<std::string> sources;
  for (const auto& m : s.migrations)
    if (m.deployment == s.deployment.name) sources.insert(m.source_pod);
  std::vector<const ReplicaState*> order;
  for (const auto& r : s.replicas) order.push_back(&r);
  auto key = [&](const ReplicaState* r) {
    const int group = sources.count(r->pod) ? 0 : r->migrating ? 2 : 1;
    return std::make_tuple(group, r->open_requests, r->pod);
  };
  std::sort(order.begin(), order.end(), [&](auto* a, auto* b) { return key(a) < key(b); });
  std::set<std::string> out;
  for (int64_t i = 0; i < extra; ++i) out.insert(order[static_cast<size_t>(i)]->pod);
  return out;
}

std::optional<Candidate> trigger_of(const Snapshot& s, const ReplicaState& r, const std::set<std::string>& extras,
                                    const LoadMemory& memory) {
  const Triggers& t = s.deployment.triggers;
  const NodeState* node = find_node(s, r.node);  // node-side signals need the node known
  Candidate c{&r, Reason::kGpuHealth, "", {}};
  if (t.gpu_health && (r.gpu_fault || (node && node->gpu_faulty))) {
    c.message = r.gpu_fault ? "GPU fault reported by the agent" : "node " + r.node + " has a faulty GPU";
    return c;
  }
  if (t.maintenance && ((node && (node->unschedulable || node->no_execute)) || r.evicting)) {
    c.reason = Reason::kMaintenance;
    c.message = node && node->unschedulable ? "node " + r.node + " is cordoned"
                : node && node->no_execute  ? "node " + r.node + " has a NoExecute taint"
                                            : "pod is being evicted (drain)";
    return c;
  }
  if (t.schedule && node) {
    if (const MaintenanceWindow* w = window_on(s, *node)) {
      c.reason = Reason::kSchedule;
      c.message = "maintenance window " + window_name(*w) + " on node " + r.node + " " + window_when(s, *w);
      return c;
    }
  }
  if (t.version && !r.model_current) {
    c.reason = Reason::kVersion;
    c.message = r.kv_layout_current ? "model changed" : "model and KV layout changed";
    c.constraints.avoid_source_node = false;  // a healthy node: the new version may start beside it
    return c;
  }
  if (t.scale_down && extras.count(r.pod)) {
    c.reason = Reason::kScaleDown;
    c.message = "scale-down from " + std::to_string(s.replicas.size()) + " to " +
                std::to_string(s.deployment.replicas) + " replicas: fewest open requests (" +
                std::to_string(r.open_requests) + ")";
    return c;
  }
  if (t.load) return load_candidate(s, r, memory);
  return std::nullopt;
}

// A scale-down's receiver: a remaining serving replica, the shortest queue first, then the
// name, skipping those whose node is at its per-node limit. An error says what held it.
StatusOr<const ReplicaState*> scale_down_receiver(const Snapshot& s, const PlanUsage& usage,
                                                  const std::set<std::string>& extras) {
  std::vector<const ReplicaState*> order;
  for (const auto& r : s.replicas)
    if (r.serving && !extras.count(r.pod)) order.push_back(&r);
  if (order.empty()) return failed_precondition("held: no remaining replica is serving to take its sequences");
  std::sort(order.begin(), order.end(),
            [](auto* a, auto* b) { return std::tie(a->queue_depth, a->pod) < std::tie(b->queue_depth, b->pod); });
  std::vector<std::string> full;
  for (const ReplicaState* r : order) {
    const int64_t on_node = node_migrations(s, usage, r->node);
    if (on_node < s.deployment.max_concurrent_per_node) return r;
    full.push_back(r->pod + " on node " + r->node + " (" +
                   migrations_of(on_node, s.deployment.max_concurrent_per_node) + " per node)");
  }
  return failed_precondition("held: every remaining serving replica's node is at its limit: " + join(full, "; "));
}

}  // namespace

StatusOr<Target> choose_target(const Snapshot& snapshot, const ReplicaState& source,
                               const TargetConstraints& constraints) {
  return choose_target_in(snapshot, PlanUsage{}, source, constraints);
}

Plan plan_migrations(const Snapshot& s) {
  Plan plan;
  for (const auto& r : s.replicas) plan.load[r.pod] = next_load_memory(s, r);
  if (!s.deployment.enabled) return plan;

  const DeploymentPolicy& d = s.deployment;
  const std::set<std::string> extras = d.triggers.scale_down ? scale_down_extras(s) : std::set<std::string>{};
  std::vector<Candidate> candidates;
  for (const auto& r : s.replicas) {
    if (r.migrating) continue;
    if (auto c = trigger_of(s, r, extras, plan.load[r.pod])) candidates.push_back(std::move(*c));
  }
  // The most urgent first, so they get the limited slots; then by name, for a stable plan.
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.reason, a.replica->pod) < std::tie(b.reason, b.replica->pod);
  });

  const int64_t active = active_of_deployment(s);
  PlanUsage usage;
  for (const Candidate& c : candidates) {
    const ReplicaState& r = *c.replica;
    auto hold = [&](const std::string& why) { plan.held.push_back({r.pod, c.reason, c.message + "; " + why}); };
    if (c.reason == Reason::kLoad) {
      const int64_t cooldown = d.load.cooldown_seconds;
      if (!usage.load_move_pod.empty()) {
        hold("held: cooldown, a load move of " + usage.load_move_pod + " was decided now (cooldown " +
             std::to_string(cooldown) + " s)");
        continue;
      }
      if (s.last_load_move_unix >= 0 && s.now_unix < s.last_load_move_unix + cooldown) {
        hold("held: cooldown, the last load move was " + std::to_string(s.now_unix - s.last_load_move_unix) +
             " s ago (cooldown " + std::to_string(cooldown) + " s)");
        continue;
      }
    }
    const int64_t in_deployment = active + usage.decided;
    if (in_deployment >= d.max_concurrent) {
      hold("held: " + migrations_of(in_deployment, d.max_concurrent) + (in_deployment == 1 ? " is" : " are") +
           " active");
      continue;
    }
    const int64_t on_source = node_migrations(s, usage, r.node);
    if (!r.node.empty() && on_source >= d.max_concurrent_per_node) {
      hold("held: node " + r.node + " has " + migrations_of(on_source, d.max_concurrent_per_node) + " per node");
      continue;
    }

    Decision decision{r.pod, c.reason, "", {}, c.message};
    if (c.reason == Reason::kScaleDown) {
      auto receiver = scale_down_receiver(s, usage, extras);
      if (!receiver.ok()) {
        hold(receiver.status().message());
        continue;
      }
      const ReplicaState& into = **receiver;
      decision.target = Target{into.node, into.gpu_class, into.pod};
      decision.mode = mode_for(d, r.kv_layout_current, into.kv_layout_current);
    } else {
      auto target = choose_target_in(s, usage, r, c.constraints);
      if (!target.ok()) {
        hold(target.status().message());
        continue;
      }
      decision.target = *target;
      decision.mode = mode_for(d, r.kv_layout_current, true);
      usage.gpus[decision.target.node] += 1;
    }
    usage.decided += 1;
    usage.node_migrations[r.node] += 1;
    if (decision.target.node != r.node) usage.node_migrations[decision.target.node] += 1;
    if (c.reason == Reason::kLoad) usage.load_move_pod = r.pod;
    plan.migrations.push_back(std::move(decision));
  }
  return plan;
}

}  // namespace hotswap::policy
