// policy.h as tables: a snapshot of the cluster -> the decisions and held entries of its plan,
// the target choose_target() picks or the error naming every node, and the load memory.
#include <gtest/gtest.h>

#include "operator/policy/policy.h"

#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace hotswap::policy {
namespace {

constexpr int64_t kWindow = 1796205600;  // 2026-12-02T10:00:00Z
constexpr int64_t kNow = kWindow - 240;  // the window opens in 240 s (the lead is 300 s)

template <typename T, typename F>
T with(T value, F&& change) {
  change(value);
  return value;
}

NodeState node(std::string name, std::string gpu_class = "l4", int64_t gpus = 4, int64_t used = 1,
               std::map<std::string, std::string> labels = {}) {
  NodeState n;
  n.name = std::move(name);
  n.gpu_class = std::move(gpu_class);
  n.gpus = gpus;
  n.gpus_used = used;
  n.labels = std::move(labels);
  return n;
}

NodeState cordoned(NodeState n) {
  return with(n, [](NodeState& x) { x.unschedulable = true; });
}

ReplicaState replica(std::string pod, std::string on_node, std::string gpu_class = "l4") {
  ReplicaState r;
  r.pod = std::move(pod);
  r.node = std::move(on_node);
  r.gpu_class = std::move(gpu_class);
  r.serving = true;
  return r;
}

// A deployment "chat" whose spec.replicas is the number of replicas given (no scale-down).
Snapshot world(std::vector<NodeState> nodes, std::vector<ReplicaState> replicas) {
  Snapshot s;
  s.now_unix = kNow;
  s.deployment.name = "chat";
  s.deployment.replicas = static_cast<int64_t>(replicas.size());
  s.nodes = std::move(nodes);
  s.replicas = std::move(replicas);
  return s;
}

// n1 (l4, 1/4 used) holds replica a; n2 (l4, 1/4) and n3 (l4, 2/4) are free to take it.
Snapshot base() {
  return world({node("n1"), node("n2"), node("n3", "l4", 4, 2)}, {replica("a", "n1")});
}

// n1 carries zone=a, the zone of the window that opens at kWindow for an hour.
Snapshot windowed(int64_t now, std::map<std::string, std::string> selector = {{"zone", "a"}}) {
  Snapshot s = world({node("n1", "l4", 4, 1, {{"zone", "a"}}), node("n2", "l4", 4, 1, {{"zone", "b"}}),
                      node("n3", "l4", 4, 2, {{"zone", "b"}})},
                     {replica("a", "n1")});
  s.now_unix = now;
  s.deployment.windows = {MaintenanceWindow{kWindow, 3600, std::move(selector)}};
  return s;
}

// The load trigger on, l4 the cheaper and a100 the faster class; n4 is an a100 node.
Snapshot loaded(std::vector<ReplicaState> replicas) {
  Snapshot s = world({node("n1"), node("n2"), node("n3", "l4", 4, 2), node("n4", "a100", 4, 0)}, std::move(replicas));
  s.deployment.triggers.load = true;
  s.deployment.load.faster_classes = {"a100"};
  s.deployment.load.cheaper_classes = {"l4"};
  return s;
}

ReplicaState busy(std::string pod, std::string on_node, std::string gpu_class = "l4") {
  return with(replica(std::move(pod), std::move(on_node), std::move(gpu_class)),
              [](ReplicaState& r) { r.queue_depth = 40, r.utilization = 0.5; });
}
ReplicaState quiet(std::string pod, std::string on_node, std::string gpu_class = "l4") {
  return with(replica(std::move(pod), std::move(on_node), std::move(gpu_class)),
              [](ReplicaState& r) { r.queue_depth = 0, r.utilization = 0.1; });
}

// ---- plan_migrations ----------------------------------------------------------------------

struct WantMigration {
  std::string pod;
  Reason reason;
  std::string node, gpu_class;
  std::string mode = "KV";
  std::string target_pod = "";
  std::string message = "";  // exact when given
};

struct WantHeld {
  std::string pod;
  Reason reason;
  std::string message;  // a part of the message
};

struct PlanCase {
  std::string name;
  Snapshot snapshot;
  std::vector<WantMigration> migrations;
  std::vector<WantHeld> held;
};

void PrintTo(const PlanCase& c, std::ostream* os) {
  *os << c.name;
}

std::string describe(const Plan& p) {
  std::ostringstream os;
  for (const auto& d : p.migrations)
    os << "  migrate " << d.pod << " " << reason_name(d.reason) << " -> node=" << d.target.node
       << " class=" << d.target.gpu_class << " pod=" << d.target.pod << " mode=" << d.mode << " (" << d.message
       << ")\n";
  for (const auto& h : p.held) os << "  held " << h.pod << " " << reason_name(h.reason) << ": " << h.message << "\n";
  return os.str();
}

std::vector<PlanCase> plan_cases() {
  std::vector<PlanCase> cases;
  auto add = [&](std::string name, Snapshot s, std::vector<WantMigration> m, std::vector<WantHeld> h = {}) {
    cases.push_back({std::move(name), std::move(s), std::move(m), std::move(h)});
  };
  using R = Reason;

  // -- each trigger --
  add("NothingHoldsNothingMoves", base(), {});
  add("AgentGpuFaultMovesTheReplicaToTheLeastUsedOtherNode",
      with(base(), [](Snapshot& s) { s.replicas[0].gpu_fault = true; }),
      {{"a", R::kGpuHealth, "n2", "l4", "KV", "", "GPU fault reported by the agent"}});
  add("FaultyNodeGpuMovesTheReplica", with(base(), [](Snapshot& s) { s.nodes[0].gpu_faulty = true; }),
      {{"a", R::kGpuHealth, "n2", "l4", "KV", "", "node n1 has a faulty GPU"}});
  add("CordonedNodeMovesTheReplica", with(base(), [](Snapshot& s) { s.nodes[0].unschedulable = true; }),
      {{"a", R::kMaintenance, "n2", "l4", "KV", "", "node n1 is cordoned"}});
  add("NoExecuteTaintMovesTheReplica", with(base(), [](Snapshot& s) { s.nodes[0].no_execute = true; }),
      {{"a", R::kMaintenance, "n2", "l4", "KV", "", "node n1 has a NoExecute taint"}});
  add("EvictedPodMovesOffItsHealthyNode", with(base(), [](Snapshot& s) { s.replicas[0].evicting = true; }),
      {{"a", R::kMaintenance, "n2", "l4", "KV", "", "pod is being evicted (drain)"}});
  add("WindowOpeningWithinTheLeadMovesTheReplicaOutOfItsZone", windowed(kWindow - 240),
      {{"a", R::kSchedule, "n2", "l4", "KV", "",
        "maintenance window 2026-12-02T10:00:00Z (60 min) on node n1 opens in 240 s"}});
  add("OpenWindowMovesTheReplica", windowed(kWindow + 600),
      {{"a", R::kSchedule, "n2", "l4", "KV", "",
        "maintenance window 2026-12-02T10:00:00Z (60 min) on node n1 is open, closes in 3000 s"}});
  add("WindowExactlyLeadSecondsAwayMoves", windowed(kWindow - 300), {{"a", R::kSchedule, "n2", "l4"}});
  add("WindowOneSecondBeyondTheLeadDoesNotMove", windowed(kWindow - 301), {});
  add("WindowInItsLastSecondMoves", windowed(kWindow + 3599), {{"a", R::kSchedule, "n2", "l4"}});
  add("WindowThatHasClosedDoesNotMove", windowed(kWindow + 3600), {});
  add("WindowWhoseSelectorMissesTheNodeDoesNotMove", windowed(kWindow - 240, {{"zone", "c"}}), {});
  add("WindowWithEmptySelectorCoversEveryNodeSoNoTargetFits", windowed(kWindow - 240, {}), {},
      {{"a", R::kSchedule,
        "on node n1 opens in 240 s; no node fits: n1: maintenance window 2026-12-02T10:00:00Z (60 min) opens in 240 s, "
        "the source's node; n2: maintenance window"}});
  add("ChangedModelRollsInTheDeploymentModeAndMayStartBesideItself",
      with(base(),
           [](Snapshot& s) {
             s.replicas[0].model_current = false;
             s.deployment.mode = "Auto";
           }),
      {{"a", R::kVersion, "n1", "l4", "Auto", "", "model changed"}});
  add("ChangedKvLayoutRecomputes",
      with(base(),
           [](Snapshot& s) {
             s.replicas[0].model_current = false;
             s.replicas[0].kv_layout_current = false;
           }),
      {{"a", R::kVersion, "n1", "l4", "Recompute", "", "model and KV layout changed"}});
  add("ReplicaOnAnOldKvLayoutRecomputesWhateverTheTrigger",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].model_current = false;
             s.replicas[0].kv_layout_current = false;
           }),
      {{"a", R::kMaintenance, "n2", "l4", "Recompute", "", "node n1 is cordoned"}});

  // -- scale-down --
  auto three = [] {
    Snapshot s =
        world({node("n1"), node("n2"), node("n3", "a10g")},
              {with(replica("a", "n1"), [](ReplicaState& r) { r.open_requests = 5, r.queue_depth = 3; }),
               with(replica("b", "n2"), [](ReplicaState& r) { r.open_requests = 1, r.queue_depth = 0; }),
               with(replica("c", "n3", "a10g"), [](ReplicaState& r) { r.open_requests = 9, r.queue_depth = 1; })});
    s.deployment.replicas = 2;
    return s;
  };
  add("ScaleDownHandsTheFewestOpenRequestsReplicaToTheShortestQueue", three(),
      {{"b", R::kScaleDown, "n3", "a10g", "KV", "c", "scale-down from 3 to 2 replicas: fewest open requests (1)"}});
  add("ScaleDownTieOnOpenRequestsGoesByName", with(three(), [](Snapshot& s) { s.replicas[0].open_requests = 1; }),
      {{"a", R::kScaleDown, "n2", "l4", "KV", "b"}});
  add("ScaleDownReceiverTieOnQueueGoesByName", with(three(), [](Snapshot& s) { s.replicas[2].queue_depth = 3; }),
      {{"b", R::kScaleDown, "n1", "l4", "KV", "a"}});
  add("ScaleDownSkipsReceiversThatAreNotServing", with(three(), [](Snapshot& s) { s.replicas[2].serving = false; }),
      {{"b", R::kScaleDown, "n1", "l4", "KV", "a"}});
  add("ScaleDownWithoutAServingReceiverIsHeld",
      with(three(),
           [](Snapshot& s) {
             s.replicas[0].serving = false;
             s.replicas[2].serving = false;
           }),
      {}, {{"b", R::kScaleDown, "fewest open requests (1); held: no remaining replica is serving"}});
  add("ScaleDownIntoAnOldLayoutReplicaRecomputes",
      with(three(), [](Snapshot& s) { s.replicas[2].kv_layout_current = false; }),
      {{"b", R::kScaleDown, "n3", "a10g", "Recompute", "c"}});
  add("ScaleDownByTwoSpreadsReceiversOverNodeLimits",
      with(world({node("n1"), node("n2"), node("n3"), node("n4")},
                 {with(replica("a", "n1"), [](ReplicaState& r) { r.open_requests = 0, r.queue_depth = 5; }),
                  with(replica("b", "n2"), [](ReplicaState& r) { r.open_requests = 1, r.queue_depth = 5; }),
                  with(replica("c", "n3"), [](ReplicaState& r) { r.open_requests = 5, r.queue_depth = 0; }),
                  with(replica("d", "n4"), [](ReplicaState& r) { r.open_requests = 6, r.queue_depth = 1; })}),
           [](Snapshot& s) {
             s.deployment.replicas = 2;
             s.deployment.max_concurrent = 2;
           }),
      {{"a", R::kScaleDown, "n3", "l4", "KV", "c"}, {"b", R::kScaleDown, "n4", "l4", "KV", "d"}});
  add("ScaleDownInFlightIsNotRepeatedOnAnotherReplica",
      with(three(),
           [](Snapshot& s) {
             s.replicas[0].migrating = true;
             s.replicas[0].open_requests = 10;
             s.migrations = {{"chat", "a", "n1", ""}};
             s.deployment.max_concurrent = 3;
           }),
      {});

  // -- load --
  auto memory = [](Snapshot s, std::string pod, LoadMemory m) {
    s.load[pod] = m;
    return s;
  };
  add("QueueHighForTheSustainTimeMovesToTheFasterClass", memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
      {{"a", R::kLoad, "n4", "a100", "KV", "", "queue depth 40 >= 32 for 65 s"}});
  add("UtilizationHighForExactlyTheSustainTimeMoves",
      memory(loaded({with(replica("a", "n1"), [](ReplicaState& r) { r.utilization = 0.95; })}), "a", {kNow - 60, -1}),
      {{"a", R::kLoad, "n4", "a100", "KV", "", "utilization 0.95 >= 0.90 for 60 s"}});
  add("HighNotYetSustainedDoesNotMove", memory(loaded({busy("a", "n1")}), "a", {kNow - 59, -1}), {});
  add("HighOnTheFasterClassStays", memory(loaded({busy("a", "n4", "a100")}), "a", {kNow - 600, -1}), {});
  add("LowForTheSustainTimeGoesBackToTheCheaperClass", memory(loaded({quiet("a", "n4", "a100")}), "a", {-1, kNow - 70}),
      {{"a", R::kLoad, "n1", "l4", "KV", "", "queue depth 0 <= 2 and utilization 0.10 <= 0.30 for 70 s"}});
  add("LowNotYetSustainedStays", memory(loaded({quiet("a", "n4", "a100")}), "a", {-1, kNow - 10}), {});
  add("LowOnTheCheaperClassStays", memory(loaded({quiet("a", "n1")}), "a", {-1, kNow - 600}), {});
  add("LowWithoutCheaperClassesStays",
      with(memory(loaded({quiet("a", "n4", "a100")}), "a", {-1, kNow - 600}),
           [](Snapshot& s) { s.deployment.load.cheaper_classes.clear(); }),
      {});
  add("LoadMoveWithinTheCooldownIsHeld",
      with(memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
           [](Snapshot& s) { s.last_load_move_unix = kNow - 100; }),
      {},
      {{"a", R::kLoad,
        "queue depth 40 >= 32 for 65 s; held: cooldown, the last load move was 100 s ago (cooldown 300 s)"}});
  add("LoadMoveWhenTheCooldownEndsMoves",
      with(memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
           [](Snapshot& s) { s.last_load_move_unix = kNow - 300; }),
      {{"a", R::kLoad, "n4", "a100"}});
  add("FasterClassesAreTriedInTheirOrder",
      with(memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
           [](Snapshot& s) {
             s.deployment.load.faster_classes = {"h100", "a100"};
             s.nodes.push_back(node("n5", "h100", 4, 3));
           }),
      {{"a", R::kLoad, "n5", "h100"}});
  add("FullPreferredFasterClassFallsToTheNext",
      with(memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
           [](Snapshot& s) {
             s.deployment.load.faster_classes = {"h100", "a100"};
             s.nodes.push_back(node("n5", "h100", 4, 4));
           }),
      {{"a", R::kLoad, "n4", "a100"}});
  add("LoadTriggerOffDoesNotMove",
      with(memory(loaded({busy("a", "n1")}), "a", {kNow - 65, -1}),
           [](Snapshot& s) { s.deployment.triggers.load = false; }),
      {});
  add("OneLoadMovePerPlanTheOthersWaitForTheCooldown",
      with(memory(memory(loaded({busy("a", "n1"), busy("b", "n2")}), "a", {kNow - 65, -1}), "b", {kNow - 65, -1}),
           [](Snapshot& s) { s.deployment.max_concurrent = 2; }),
      {{"a", R::kLoad, "n4", "a100"}}, {{"b", R::kLoad, "held: cooldown, a load move of a was decided now"}});

  // -- priorities --
  add("GpuHealthWinsOverMaintenance",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].gpu_fault = true;
           }),
      {{"a", R::kGpuHealth, "n2", "l4"}});
  add("MaintenanceWinsOverSchedule", with(windowed(kWindow - 240), [](Snapshot& s) { s.replicas[0].evicting = true; }),
      {{"a", R::kMaintenance, "n2", "l4"}});
  add("ScheduleWinsOverVersion",
      with(windowed(kWindow - 240), [](Snapshot& s) { s.replicas[0].model_current = false; }),
      {{"a", R::kSchedule, "n2", "l4"}});
  add("VersionWinsOverScaleDown", with(three(), [](Snapshot& s) { s.replicas[1].model_current = false; }),
      {{"b", R::kVersion, "n1", "l4"}});
  add("ScaleDownWinsOverLoad",
      with(memory(three(), "b", {kNow - 65, -1}),
           [](Snapshot& s) {
             s.deployment.triggers.load = true;
             s.deployment.load.faster_classes = {"a10g"};
             s.replicas[1].queue_depth = 40;
           }),
      {{"b", R::kScaleDown, "n3", "a10g", "KV", "c"}});
  add("GpuHealthOffLeavesMaintenance",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].gpu_fault = true;
             s.deployment.triggers.gpu_health = false;
           }),
      {{"a", R::kMaintenance, "n2", "l4"}});
  add("MaintenanceOffLeavesVersion",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].model_current = false;
             s.deployment.triggers.maintenance = false;
           }),
      {{"a", R::kVersion, "n2", "l4"}});

  // -- each trigger off --
  add("GpuHealthOffDoesNotMove",
      with(base(),
           [](Snapshot& s) {
             s.replicas[0].gpu_fault = true;
             s.nodes[0].gpu_faulty = true;
             s.deployment.triggers.gpu_health = false;
           }),
      {});
  add("MaintenanceOffDoesNotMove",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.nodes[0].no_execute = true;
             s.replicas[0].evicting = true;
             s.deployment.triggers.maintenance = false;
           }),
      {});
  add("ScheduleOffDoesNotMove", with(windowed(kWindow), [](Snapshot& s) { s.deployment.triggers.schedule = false; }),
      {});
  add("VersionOffDoesNotMove",
      with(base(),
           [](Snapshot& s) {
             s.replicas[0].model_current = false;
             s.deployment.triggers.version = false;
           }),
      {});
  add("ScaleDownOffDoesNotMove", with(three(), [](Snapshot& s) { s.deployment.triggers.scale_down = false; }), {});
  add("DisabledDeploymentMovesNothing",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].gpu_fault = true;
             s.replicas[0].model_current = false;
             s.deployment.enabled = false;
           }),
      {});
  add("MigratingReplicaIsLeftAlone",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.replicas[0].migrating = true;
           }),
      {});

  // -- limits and order --
  auto two_on_two = [] {  // a on n1, b on n2; n3 and n4 free
    return world({node("n1"), node("n2"), node("n3"), node("n4", "l4", 4, 2)},
                 {replica("a", "n1"), replica("b", "n2")});
  };
  add("TheOnlySlotGoesToTheMostUrgent",
      with(two_on_two(),
           [](Snapshot& s) {
             s.replicas[0].model_current = false;
             s.replicas[1].gpu_fault = true;
           }),
      {{"b", R::kGpuHealth, "n1", "l4"}},
      {{"a", R::kVersion, "model changed; held: 1 migration of 1 allowed is active"}});
  add("EquallyUrgentGoByName",
      with(two_on_two(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.nodes[1].unschedulable = true;
           }),
      {{"a", R::kMaintenance, "n3", "l4"}}, {{"b", R::kMaintenance, "held: 1 migration of 1 allowed is active"}});
  add("TheDeploymentsActiveMigrationTakesTheSlot",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.migrations = {{"chat", "x", "n8", "n9"}};
           }),
      {}, {{"a", R::kMaintenance, "node n1 is cordoned; held: 1 migration of 1 allowed is active"}});
  add("MoreSlotsThanActiveMigrationsLeavesRoom",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.migrations = {{"chat", "x", "n8", "n9"}};
             s.deployment.max_concurrent = 2;
           }),
      {{"a", R::kMaintenance, "n2", "l4"}});
  add("AnotherDeploymentsMigrationFillsItsTargetNode",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.migrations = {{"other", "x", "n9", "n2"}};
           }),
      {{"a", R::kMaintenance, "n3", "l4"}});
  add("AnotherDeploymentsMigrationFromTheSourceNodeHoldsIt",
      with(base(),
           [](Snapshot& s) {
             s.nodes[0].unschedulable = true;
             s.migrations = {{"other", "x", "n1", "n9"}};
           }),
      {}, {{"a", R::kMaintenance, "node n1 is cordoned; held: node n1 has 1 migration of 1 allowed per node"}});
  add("DecisionsTakeTheirTargetsGpuFromLaterChoices",
      with(world({cordoned(node("n1")), node("n2", "l4", 4, 3), node("n3", "l4", 4, 3)},
                 {replica("a", "n1"), replica("b", "n1")}),
           [](Snapshot& s) {
             s.deployment.max_concurrent = 2;
             s.deployment.max_concurrent_per_node = 2;
           }),
      {{"a", R::kMaintenance, "n2", "l4"}, {"b", R::kMaintenance, "n3", "l4"}});
  add("DecisionsCountAgainstTheTargetNodesLimit",
      with(world({cordoned(node("n1")), cordoned(node("n2")), node("n3")}, {replica("a", "n1"), replica("b", "n2")}),
           [](Snapshot& s) { s.deployment.max_concurrent = 2; }),
      {{"a", R::kMaintenance, "n3", "l4"}}, {{"b", R::kMaintenance, "n3: 1 migration of 1 allowed per node"}});
  add("DecisionsCountAgainstTheSourceNodesLimit",
      with(world({cordoned(node("n1")), node("n2"), node("n3")}, {replica("a", "n1"), replica("b", "n1")}),
           [](Snapshot& s) { s.deployment.max_concurrent = 2; }),
      {{"a", R::kMaintenance, "n2", "l4"}},
      {{"b", R::kMaintenance, "held: node n1 has 1 migration of 1 allowed per node"}});
  add("NoFittingNodeIsHeldNamingEachNode",
      with(world({cordoned(node("n1")), cordoned(node("n2")), node("n3", "l4", 1, 1)}, {replica("a", "n1")}),
           [](Snapshot&) {}),
      {},
      {{"a", R::kMaintenance,
        "node n1 is cordoned; no node fits: n1: cordoned, the source's node; n2: cordoned; n3: no free GPU (1/1 "
        "used)"}});
  return cases;
}

class PlanTable : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlanTable, DecidesAndHolds) {
  const PlanCase& c = GetParam();
  const Plan plan = plan_migrations(c.snapshot);
  SCOPED_TRACE("plan:\n" + describe(plan));
  ASSERT_EQ(plan.migrations.size(), c.migrations.size());
  for (size_t i = 0; i < c.migrations.size(); ++i) {
    const Decision& got = plan.migrations[i];
    const WantMigration& want = c.migrations[i];
    EXPECT_EQ(got.pod, want.pod);
    EXPECT_EQ(reason_name(got.reason), std::string(reason_name(want.reason)));
    EXPECT_EQ(got.target.node, want.node);
    EXPECT_EQ(got.target.gpu_class, want.gpu_class);
    EXPECT_EQ(got.target.pod, want.target_pod);
    EXPECT_EQ(got.mode, want.mode);
    if (!want.message.empty()) {
      EXPECT_EQ(got.message, want.message);
    }
  }
  ASSERT_EQ(plan.held.size(), c.held.size());
  for (size_t i = 0; i < c.held.size(); ++i) {
    EXPECT_EQ(plan.held[i].pod, c.held[i].pod);
    EXPECT_EQ(reason_name(plan.held[i].reason), std::string(reason_name(c.held[i].reason)));
    EXPECT_NE(plan.held[i].message.find(c.held[i].message), std::string::npos)
        << "held message: " << plan.held[i].message << "\nwants: " << c.held[i].message;
  }
}

INSTANTIATE_TEST_SUITE_P(Policy, PlanTable, ::testing::ValuesIn(plan_cases()),
                         [](const ::testing::TestParamInfo<PlanCase>& info) { return info.param.name; });

// ---- choose_target ------------------------------------------------------------------------

struct TargetCase {
  std::string name;
  Snapshot snapshot;
  TargetConstraints constraints;
  std::string node, gpu_class;  // wanted; empty: an error
  std::string error = "";       // the whole message, when an error
};

void PrintTo(const TargetCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<TargetCase> target_cases() {
  auto c = [](std::vector<std::string> classes) {
    TargetConstraints t;
    t.gpu_classes = std::move(classes);
    return t;
  };
  // The source is replica a on n1 (l4).
  auto nodes = [](std::vector<NodeState> n) { return world(std::move(n), {replica("a", "n1")}); };

  // One node for each reason a node is refused; n12 for several at once.
  Snapshot refusing = nodes({
      node("n1"),
      with(node("n2"), [](NodeState& n) { n.ready = false; }),
      cordoned(node("n3")),
      with(node("n4"), [](NodeState& n) { n.no_execute = true; }),
      with(node("n5"), [](NodeState& n) { n.gpu_faulty = true; }),
      node("n6", "l4", 4, 4),
      node("n7", "t4"),
      node("n8", "a100"),
      node("n9", "l4", 4, 1, {}),
      node("n10", "l4", 4, 1, {{"window", "yes"}}),
      node("n11"),
      cordoned(node("n12", "l4", 4, 4)),
  });
  for (auto& n : refusing.nodes)
    if (n.name != "n9") n.labels["zone"] = "a";
  refusing.deployment.gpu_classes = {"l4", "a100"};
  refusing.deployment.windows = {MaintenanceWindow{kWindow, 3600, {{"window", "yes"}}}};
  refusing.migrations = {{"other", "x", "n0", "n11"}};
  TargetConstraints refusing_constraints = c({"l4", "t4"});
  refusing_constraints.node_selector = {{"zone", "a"}};

  return {
      {"PrefersTheSourcesOwnClassWhenNoClassIsGiven",
       nodes({node("n1"), node("n2", "a100", 4, 0), node("n3", "l4", 4, 3)}),
       {},
       "n3",
       "l4"},
      {"OtherAllowedClassesWhenTheOwnClassHasNoRoom",
       nodes({node("n1"), node("n2", "a100", 4, 0), node("n3", "l4", 4, 4)}),
       {},
       "n2",
       "a100"},
      {"FewestGpusUsedWins", nodes({node("n1"), node("n2", "l4", 4, 2), node("n3", "l4", 4, 1)}), {}, "n3", "l4"},
      {"NameBreaksATie", nodes({node("n1"), node("n3"), node("n2")}), {}, "n2", "l4"},
      {"ClassOrderWinsOverFewestUsed", nodes({node("n1"), node("n2", "a100", 4, 0), node("n3", "h100", 8, 7)}),
       c({"h100", "a100"}), "n3", "h100"},
      {"NextClassWhenTheFirstHasNoFit", nodes({node("n1"), node("n2", "a100", 4, 3), node("n3", "h100", 8, 8)}),
       c({"h100", "a100"}), "n2", "a100"},
      {"OnlyTheDeploymentsAllowedClasses",
       with(nodes({node("n1"), node("n2", "l4", 4, 0), node("n3", "a100", 4, 3)}),
            [](Snapshot& s) { s.deployment.gpu_classes = {"a100"}; }),
       {},
       "n3",
       "a100"},
      {"TheRequestedNode", nodes({node("n1"), node("n2", "l4", 4, 0), node("n3", "l4", 4, 3)}),
       with(TargetConstraints{}, [](TargetConstraints& t) { t.node = "n3"; }), "n3", "l4"},
      {"TheNodeSelectorsLabels",
       nodes({node("n1"), node("n2", "l4", 4, 0), node("n3", "l4", 4, 3, {{"zone", "b"}, {"rack", "7"}})}),
       with(TargetConstraints{},
            [](TargetConstraints& t) {
              t.node_selector = {{"zone", "b"}};
            }),
       "n3", "l4"},
      {"TheSourceNodeWhenNotAvoided", nodes({node("n1", "l4", 4, 0), node("n2")}),
       with(TargetConstraints{}, [](TargetConstraints& t) { t.avoid_source_node = false; }), "n1", "l4"},
      {"EveryRefusalIsNamedPerNode", refusing, refusing_constraints, "", "",
       "no node fits: n1: the source's node; "
       "n10: maintenance window 2026-12-02T10:00:00Z (60 min) opens in 240 s; "
       "n11: 1 migration of 1 allowed per node; "
       "n12: cordoned, no free GPU (4/4 used); "
       "n2: not Ready; n3: cordoned; n4: tainted NoExecute; n5: GPU marked faulty; n6: no free GPU (4/4 used); "
       "n7: GPU class t4 not allowed; n8: GPU class a100 not one of l4, t4; n9: no label zone=a"},
      {"NodeWithoutAClassIsNotAllowedWhenClassesAreListed",
       with(nodes({node("n1"), node("n2", "")}), [](Snapshot& s) { s.deployment.gpu_classes = {"l4"}; }),
       {},
       "",
       "",
       "no node fits: n1: the source's node; n2: GPU class (none) not allowed"},
      {"RefusedRequestedNodeSaysWhy", nodes({node("n1"), node("n2"), cordoned(node("n3"))}),
       with(TargetConstraints{}, [](TargetConstraints& t) { t.node = "n3"; }), "", "",
       "no node fits: n1: not the requested node n3; n2: not the requested node n3; n3: cordoned"},
      {"MissingRequestedNode", nodes({node("n1"), node("n2")}),
       with(TargetConstraints{}, [](TargetConstraints& t) { t.node = "n7"; }), "", "",
       "no node fits: node n7 not found"},
      {"NoNodesAtAll", nodes({}), {}, "", "", "no node fits: there are no nodes"},
  };
}

class TargetTable : public ::testing::TestWithParam<TargetCase> {};

TEST_P(TargetTable, ChoosesOrExplains) {
  const TargetCase& c = GetParam();
  auto got = choose_target(c.snapshot, c.snapshot.replicas[0], c.constraints);
  if (c.node.empty()) {
    ASSERT_FALSE(got.ok()) << "chose " << got->node;
    EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(got.status().message(), c.error);
  } else {
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(got->node, c.node);
    EXPECT_EQ(got->gpu_class, c.gpu_class);
    EXPECT_EQ(got->pod, "");
  }
}

INSTANTIATE_TEST_SUITE_P(Policy, TargetTable, ::testing::ValuesIn(target_cases()),
                         [](const ::testing::TestParamInfo<TargetCase>& info) { return info.param.name; });

// ---- load memory --------------------------------------------------------------------------

struct MemoryCase {
  std::string name;
  int64_t queue_depth;
  double utilization;
  std::optional<LoadMemory> before;
  LoadMemory after;
  bool load_on = true;
};

void PrintTo(const MemoryCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<MemoryCase> memory_cases() {
  const int64_t t = kNow;
  return {
      {"HighStartsAtNow", 40, 0.5, std::nullopt, {t, -1}},
      {"HighKeepsItsStartWhileHigh", 40, 0.5, LoadMemory{t - 30, -1}, {t - 30, -1}},
      {"QueueAtTheHighThresholdIsHigh", 32, 0.5, std::nullopt, {t, -1}},
      {"UtilizationAtTheHighThresholdIsHigh", 0, 0.9, std::nullopt, {t, -1}},
      {"HighEndsWhenBelowTheHighThresholds", 31, 0.89, LoadMemory{t - 30, -1}, {-1, -1}},
      {"LowStartsAtNow", 0, 0.1, std::nullopt, {-1, t}},
      {"LowKeepsItsStartWhileLow", 2, 0.3, LoadMemory{-1, t - 30}, {-1, t - 30}},
      {"LowNeedsBothQueueAndUtilizationLow", 0, 0.31, LoadMemory{-1, t - 30}, {-1, -1}},
      {"NeitherHighNorLowResetsBoth", 10, 0.5, LoadMemory{t - 10, t - 20}, {-1, -1}},
      {"HighEndsLowAndLowEndsHigh", 40, 0.5, LoadMemory{-1, t - 20}, {t, -1}},
      {"LoadTriggerOffRemembersNothing", 40, 0.5, LoadMemory{t - 30, -1}, {-1, -1}, false},
  };
}

class MemoryTable : public ::testing::TestWithParam<MemoryCase> {};

TEST_P(MemoryTable, NextLoadMemory) {
  const MemoryCase& c = GetParam();
  Snapshot s = loaded({with(replica("a", "n1"), [&](ReplicaState& r) {
    r.queue_depth = c.queue_depth;
    r.utilization = c.utilization;
  })});
  s.deployment.triggers.load = c.load_on;
  if (c.before) s.load["a"] = *c.before;
  const Plan plan = plan_migrations(s);
  ASSERT_EQ(plan.load.size(), 1u);
  ASSERT_TRUE(plan.load.count("a"));
  EXPECT_EQ(plan.load.at("a").high_since_unix, c.after.high_since_unix);
  EXPECT_EQ(plan.load.at("a").low_since_unix, c.after.low_since_unix);
  EXPECT_TRUE(plan.migrations.empty()) << "none of these is sustained";  // sustain is 60 s
}

INSTANTIATE_TEST_SUITE_P(Policy, MemoryTable, ::testing::ValuesIn(memory_cases()),
                         [](const ::testing::TestParamInfo<MemoryCase>& info) { return info.param.name; });

TEST(Policy, PlanRemembersTheLoadOfEveryReplicaAndDropsGoneOnes) {
  Snapshot s =
      loaded({busy("a", "n1"), with(busy("b", "n2"), [](ReplicaState& r) { r.migrating = true; }), quiet("c", "n3")});
  s.load["gone"] = {kNow - 500, -1};
  s.load["b"] = {kNow - 30, -1};
  const Plan plan = plan_migrations(s);
  ASSERT_EQ(plan.load.size(), 3u);
  EXPECT_EQ(plan.load.at("a").high_since_unix, kNow);
  EXPECT_EQ(plan.load.at("b").high_since_unix, kNow - 30);  // migrating: still observed
  EXPECT_EQ(plan.load.at("c").low_since_unix, kNow);
  EXPECT_FALSE(plan.load.count("gone"));
}

TEST(Policy, DisabledDeploymentRemembersNoLoad) {
  Snapshot s = loaded({busy("a", "n1")});
  s.load["a"] = {kNow - 600, -1};
  s.deployment.enabled = false;
  const Plan plan = plan_migrations(s);
  EXPECT_TRUE(plan.migrations.empty());
  EXPECT_TRUE(plan.held.empty());
  ASSERT_EQ(plan.load.size(), 1u);
  EXPECT_EQ(plan.load.at("a").high_since_unix, -1);
  EXPECT_EQ(plan.load.at("a").low_since_unix, -1);
}

TEST(Policy, HeldLoadMoveKeepsItsMemorySoItMovesWhenTheCooldownEnds) {
  Snapshot s = loaded({busy("a", "n1")});
  s.load["a"] = {kNow - 65, -1};
  s.last_load_move_unix = kNow - 299;
  Plan plan = plan_migrations(s);
  ASSERT_EQ(plan.held.size(), 1u);
  EXPECT_EQ(plan.load.at("a").high_since_unix, kNow - 65);

  s.now_unix = kNow + 1;
  s.load = plan.load;
  plan = plan_migrations(s);
  ASSERT_EQ(plan.migrations.size(), 1u);
  EXPECT_EQ(plan.migrations[0].target.gpu_class, "a100");
  EXPECT_EQ(plan.migrations[0].message, "queue depth 40 >= 32 for 66 s");
}

TEST(Policy, ReasonNamesAreTheModelMigrationSpecReasons) {
  EXPECT_STREQ(reason_name(Reason::kGpuHealth), "GpuHealth");
  EXPECT_STREQ(reason_name(Reason::kMaintenance), "Maintenance");
  EXPECT_STREQ(reason_name(Reason::kSchedule), "Schedule");
  EXPECT_STREQ(reason_name(Reason::kVersion), "Version");
  EXPECT_STREQ(reason_name(Reason::kScaleDown), "ScaleDown");
  EXPECT_STREQ(reason_name(Reason::kLoad), "Load");
}

}  // namespace
}  // namespace hotswap::policy
