// When and where the operator moves replicas (DESIGN.md, "Decisions"): pure functions over a
// snapshot of the cluster as one ModelDeployment sees it. The controllers build the snapshot
// from their informer caches and the agents' status, call plan_migrations(), and turn each
// decision into a ModelMigration; so every rule here is tested with tables of states ->
// decisions, without a cluster.
//
// Triggers, in the order they win when several hold for one replica:
//   GpuHealth   the replica's agent reports a GPU fault, or its node's GPU is marked bad
//   Maintenance its node is cordoned (spec.unschedulable) or tainted NoExecute, or its Pod is
//               being evicted (a drain: the PodDisruptionBudget holds the eviction)
//   Schedule    a maintenance window whose nodeSelector matches its node opens within
//               window_lead_seconds (or is open)
//   Version     its model (spec.model + engine, as a hash) is not the spec's: a rolling migration,
//               mode Recompute when the KV layout changed
//   ScaleDown   more replicas than spec.replicas: the extra one with the fewest open requests
//               hands its sequences to a remaining replica (target.pod), then goes
//   Load        queue depth or utilisation above the high thresholds for sustain_seconds: to a
//               faster class; below the low ones for sustain_seconds: to a cheaper class; not
//               within cooldown_seconds of the deployment's last load move
// Each trigger is off when the deployment's migration.triggers says so, and all of them when
// migration.enabled is false. A replica already migrating is left alone.
//
// Limits: at most max_concurrent migrations of the deployment at once (those active and those
// decided now), and at most max_concurrent_per_node with the node as source or target (counting
// every deployment's active migrations). A target is never a node that is not Ready, cordoned,
// tainted NoExecute, GPU-faulty, without a free GPU, in an opening maintenance window, of a GPU
// class the deployment does not allow, or at its per-node limit. What a trigger wanted but a
// limit or the lack of a target held back is reported in Plan::held, with the reason, so the
// controller can say it in an Event and retry.
//
// Threads: pure functions; no I/O, no clock (the snapshot carries now).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::policy {

struct NodeState {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string gpu_class;      // label nvidia.com/gpu.product; "" when none
  int64_t gpus = 0;           // allocatable nvidia.com/gpu
  int64_t gpus_used = 0;      // requested by Pods bound or being created on it (targets included)
  bool ready = true;          // condition Ready is True
  bool unschedulable = false;  // cordoned
  bool no_execute = false;     // carries a NoExecute taint
  bool gpu_faulty = false;     // an agent on it reported a GPU fault
};

struct ReplicaState {
  std::string pod;
  std::string node;
  std::string gpu_class;
  bool serving = false;      // Ready with its hotswap.io/serving gate True
  bool migrating = false;    // the source or target of an active migration
  bool evicting = false;     // an eviction of its Pod was asked for (a drain)
  bool gpu_fault = false;    // its agent reports a GPU fault (ECC, Xid, thermal)
  bool model_current = true;      // runs the spec's model and engine options
  bool kv_layout_current = true;  // its KV layout (dtype, block size, architecture) is the spec's
  int64_t queue_depth = 0;   // waiting requests
  double utilization = 0;    // running sequences / max_num_seqs, in [0, 1]
  int64_t open_requests = 0;
};

struct MaintenanceWindow {
  int64_t start_unix = 0;
  int64_t duration_seconds = 0;
  std::map<std::string, std::string> node_selector;  // empty: every node
};

struct LoadPolicy {
  std::vector<std::string> faster_classes;   // in order of preference
  std::vector<std::string> cheaper_classes;  // in order of preference
  int64_t queue_depth_high = 32;
  int64_t queue_depth_low = 2;
  double utilization_high = 0.9;
  double utilization_low = 0.3;
  int64_t sustain_seconds = 60;
  int64_t cooldown_seconds = 300;
};

struct Triggers {
  bool maintenance = true, gpu_health = true, load = false, schedule = true, version = true, scale_down = true;
};

struct DeploymentPolicy {
  std::string name;
  bool enabled = true;
  std::string mode = "KV";  // KV, Recompute, Auto: spec.migration.mode
  Triggers triggers;
  int64_t replicas = 1;  // spec.replicas
  int64_t max_concurrent = 1;
  int64_t max_concurrent_per_node = 1;
  std::vector<std::string> gpu_classes;  // allowed; empty: any
  LoadPolicy load;
  std::vector<MaintenanceWindow> windows;
  int64_t window_lead_seconds = 300;
};

// A migration in flight (of any deployment): it counts against the limits.
struct ActiveMigration {
  std::string deployment;
  std::string source_pod, source_node;
  std::string target_node;  // "" while not chosen
};

// What the load trigger remembers of one replica between calls (the caller keeps it; the plan
// returns the next value). -1: not since.
struct LoadMemory {
  int64_t high_since_unix = -1;
  int64_t low_since_unix = -1;
};

struct Snapshot {
  int64_t now_unix = 0;
  DeploymentPolicy deployment;
  std::vector<NodeState> nodes;
  std::vector<ReplicaState> replicas;  // this deployment's, not being deleted, targets excluded
  std::vector<ActiveMigration> migrations;
  std::map<std::string, LoadMemory> load;  // by pod
  int64_t last_load_move_unix = -1;        // the deployment's last Load migration
};

enum class Reason { kGpuHealth, kMaintenance, kSchedule, kVersion, kScaleDown, kLoad };
// The ModelMigration spec.reason: "GpuHealth", "Maintenance", ...
const char* reason_name(Reason reason);

// Where a replica goes: a new Pod on node (of gpu_class), or, for a scale-down, into the running
// replica `pod`.
struct Target {
  std::string node;
  std::string gpu_class;
  std::string pod;  // ScaleDown only
};

struct Decision {
  std::string pod;
  Reason reason;
  std::string mode;  // KV, Recompute, Auto
  Target target;
  std::string message;  // why, for the migration's status and an Event: "node node-1 is cordoned"
};

struct Held {
  std::string pod;
  Reason reason;
  std::string message;  // the trigger and what held it: "... ; no target: node-2: cordoned; node-3: no free GPU"
};

struct Plan {
  std::vector<Decision> migrations;
  std::vector<Held> held;
  std::map<std::string, LoadMemory> load;  // the next LoadMemory of every replica
};

Plan plan_migrations(const Snapshot& snapshot);

// What a target must satisfy, from a decision's trigger or a ModelMigration's spec.target.
struct TargetConstraints {
  std::string node;                                  // exactly this node
  std::map<std::string, std::string> node_selector;  // labels the node must carry
  std::vector<std::string> gpu_classes;              // one of these, in order of preference; empty: any allowed
  bool avoid_source_node = true;                     // not the source replica's node
};

// The best node for a new replica that takes over `source`: the first class of
// constraints.gpu_classes that has a fitting node, then the fewest GPUs used, then the name.
// kFailedPrecondition when none fits, naming every node and why it does not.
StatusOr<Target> choose_target(const Snapshot& snapshot, const ReplicaState& source,
                               const TargetConstraints& constraints);

}  // namespace hotswap::policy
