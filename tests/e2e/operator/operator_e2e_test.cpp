// hotswap-operator end to end on the dev cluster: three GPU nodes (node-1 and node-2 t4-sim at a
// quarter of the a100-sim's speed, node-3 a100-sim), the CRDs applied with kubectl, the operator
// running in-process, a ModelDeployment of the synthetic `tiny` checkpoint, and streaming load
// through the Service with the load generator. In every scenario the clients see no failed
// request and no missing or repeated token, and each request's token ids equal those of an
// unmigrated run (the same load against a lone agent).
//
// Labelled e2e, run alone: the dev cluster's Pod and ClusterIP addresses are fixed.
#include "tests/e2e/operator/operator_e2e.h"

namespace hotswap {
namespace {

using namespace operator_e2e;

TEST_F(OperatorE2e, ADeploymentGetsItsReplicasServiceBudgetTokenAndMigrationTls) {
  deploy(2);
  const json status = md();
  EXPECT_EQ(status["status"]["replicas"], 2);
  EXPECT_EQ(status["status"]["observedGeneration"], status["metadata"]["generation"]);
  auto cond = [&](const std::string& type) {
    for (const auto& c : status["status"]["conditions"])
      if (c["type"] == type) return c["status"].get<std::string>();
    return std::string();
  };
  EXPECT_EQ(cond("Available"), "True");
  EXPECT_EQ(cond("Migrating"), "False");
  const auto ps = pods();
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_NE(controllers::pod_node(ps[0]), controllers::pod_node(ps[1])) << "one GPU per node: replicas spread";
  for (const auto& p : ps) EXPECT_EQ(controllers::pod_condition(p, controllers::kServingGate), "True");
  EXPECT_TRUE(client().get(controllers::pdbs_ref().in("default").named("tiny")).ok());
  EXPECT_TRUE(client().get(controllers::secrets_ref().in("default").named("tiny-control-token")).ok());
  auto tls = client().get(controllers::secrets_ref().in("default").named("tiny-migration-tls"));
  ASSERT_TRUE(tls.ok()) << tls.status().to_string();
  EXPECT_EQ((*tls)["type"], "kubernetes.io/tls");
  for (const char* key : {"ca.crt", "tls.crt", "tls.key"}) EXPECT_TRUE((*tls)["data"].contains(key)) << key;
  Shell table = kubectl("get md tiny");
  EXPECT_NE(table.output.find("tiny"), std::string::npos) << table.output;
}

// The migration data ports are fenced per deployment. The dev cluster stores NetworkPolicies
// without enforcing them (its Pods are processes on loopback); what is checked here is that the
// operator makes the policy, puts it back when edited, and removes it when told to make none.
TEST_F(OperatorE2e, TheNetworkPolicyIsMadeRestoredWhenEditedAndRemovedWhenTurnedOff) {
  deploy(1);
  const auto ref = controllers::network_policies_ref().in("default").named("tiny-agents");
  auto spec = controllers::parse_deployment(md());
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  const json want = controllers::replica_network_policy(*spec)["spec"];
  auto policy = client().get(ref);
  ASSERT_TRUE(policy.ok()) << policy.status().to_string();
  EXPECT_EQ((*policy)["spec"], want);
  Shell listed = kubectl("get netpol");
  EXPECT_NE(listed.output.find("tiny-agents"), std::string::npos) << listed.output;
  // Opened to every source by hand; a restarted operator fences it again.
  Shell opened = kubectl(R"(patch netpol tiny-agents --type=json -p='[{"op":"replace","path":"/spec/ingress","value":[{}]}]')");
  ASSERT_EQ(opened.code, 0) << opened.output;
  ASSERT_NE(client().get(ref)->at("spec"), want);
  operator_.reset();
  start_operator();
  EXPECT_TRUE(eventually([&] { auto p = client().get(ref); return p.ok() && (*p)["spec"] == want; }, 20s))
      << client().get(ref)->dump(2);
  // Turned off: the operator's policy goes, and one of the same name someone else made stays.
  operator_.reset();
  start_operator(/*network_policy=*/false);
  EXPECT_TRUE(eventually(
      [&] {
        auto p = client().get(ref);
        return !p.ok() && p.error().is_not_found();
      },
      20s));
  // One of the same name that someone else made is theirs: left as it is, with a Warning.
  const std::string theirs_file = (dir_ / "theirs.json").string();
  std::ofstream(theirs_file) << R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "tiny-agents", "namespace": "default"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})";
  Shell theirs = kubectl("apply -f " + theirs_file);
  ASSERT_EQ(theirs.code, 0) << theirs.output;
  operator_.reset();
  start_operator();
  auto warned = [&] {
    auto events = client().list(controllers::events_ref().in("default"));
    if (!events.ok()) return false;
    for (const json& e : (*events)["items"])
      if (e.value("reason", std::string()) == "NetworkPolicyNotOurs") return true;
    return false;
  };
  EXPECT_TRUE(eventually(warned, 20s));
  policy = client().get(ref);
  ASSERT_TRUE(policy.ok()) << "a policy the operator did not make is left alone";
  EXPECT_EQ((*policy)["spec"]["podSelector"], json::object());
}

TEST_F(OperatorE2e, AReplicaPodThatFailedIsReplaced) {
  deploy(2);
  const std::string failed = kube::object_name(pods()[0]);
  auto r = client().patch(pods_ref().in("default").named(failed).sub("status"), kube::PatchType::kMerge,
                          json{{"status", {{"phase", "Failed"}, {"reason", "Evicted"}}}});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(eventually(
      [&] {
        auto ps = pods();
        return ps.size() == 2 && kube::object_name(ps[0]) != failed && kube::object_name(ps[1]) != failed;
      },
      30s));
  EXPECT_TRUE(wait_ready(2)) << md().dump(2);
}

TEST_F(OperatorE2e, CordoningANodeMovesItsReplicaLiveAndNoStreamNoticesIt) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1500ms);
  const json source = pods()[0];
  const std::string node = controllers::pod_node(source);
  Shell cordon = kubectl("cordon " + node);
  ASSERT_EQ(cordon.code, 0) << cordon.output;
  const json mm = wait_migration_end();
  ASSERT_FALSE(mm.is_null()) << "no migration ended";
  EXPECT_EQ(mm["status"]["phase"], "Completed") << mm.dump(2);
  EXPECT_EQ(mm["spec"]["reason"], "Maintenance");
  EXPECT_EQ(mm["status"]["sourcePod"], kube::object_name(source));
  EXPECT_NE(mm["status"]["targetNode"], node);
  EXPECT_GT(mm["status"].value("bytes", 0), 0) << "the KV cache was sent";
  // Another node: over the network, encrypted with the deployment's material.
  EXPECT_EQ(mm["status"]["transport"], "tls") << mm.dump(2);
  std::vector<std::string> phases;
  for (const auto& t : mm["status"]["phaseTimings"]) phases.push_back(t["phase"]);
  EXPECT_EQ(phases, (std::vector<std::string>{"Pending", "TargetScheduling", "TargetLoading", "PreCopy", "Switching",
                                              "Draining"}));
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2));
  for (const auto& p : pods()) EXPECT_NE(controllers::pod_node(p), node);
}

TEST_F(OperatorE2e, AManualMigrationToAGpuClassMovesTheNamedReplica) {
  deploy(2);
  const json source = pods()[0];
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  json mm = {{"apiVersion", "hotswap.io/v1alpha1"},
             {"kind", "ModelMigration"},
             {"metadata", {{"name", "to-a100"}, {"namespace", "default"}}},
             {"spec", {{"deployment", "tiny"}, {"replica", kube::object_name(source)}, {"target", {{"gpuClass", "a100-sim"}}}}}};
  ASSERT_TRUE(client().create(migrations_ref().in("default"), mm).ok());
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(done["status"]["targetNode"], "node-3");
  EXPECT_EQ(done["status"]["targetGpuClass"], "a100-sim");
  EXPECT_EQ(done["spec"]["reason"], "Manual");
  expect_clients_saw_nothing(load.get());
}

TEST_F(OperatorE2e, AMigrationWithNowhereToGoWaitsSayingWhyAndAMissingDeploymentFails) {
  deploy(2);
  // Both t4-sim nodes hold a replica: a move to t4-sim finds no free GPU.
  json mm = {{"apiVersion", "hotswap.io/v1alpha1"},
             {"kind", "ModelMigration"},
             {"metadata", {{"name", "nowhere"}, {"namespace", "default"}}},
             {"spec", {{"deployment", "tiny"}, {"target", {{"gpuClass", "t4-sim"}}}}}};
  ASSERT_TRUE(client().create(migrations_ref().in("default"), mm).ok());
  std::string message;
  ASSERT_TRUE(eventually(
      [&] {
        auto m = client().get(migrations_ref().in("default").named("nowhere"));
        message = m.ok() ? m->value("/status/message"_json_pointer, std::string()) : "";
        return message.find("no free GPU") != std::string::npos;
      },
      20s))
      << message;
  EXPECT_EQ(client().get(migrations_ref().in("default").named("nowhere"))->value("/status/phase"_json_pointer, std::string()),
            "Pending");
  json orphan = mm;
  orphan["metadata"]["name"] = "orphan";
  orphan["spec"] = {{"deployment", "no-such-deployment"}};
  ASSERT_TRUE(client().create(migrations_ref().in("default"), orphan).ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto m = client().get(migrations_ref().in("default").named("orphan"));
        return m.ok() && m->value("/status/phase"_json_pointer, std::string()) == "Failed";
      },
      20s));
  auto m = client().get(migrations_ref().in("default").named("orphan"));
  EXPECT_NE(m->value("/status/message"_json_pointer, std::string()).find("no-such-deployment not found"),
            std::string::npos)
      << m->dump(2);
  EXPECT_EQ(pods().size(), 2u) << "nothing was started";
}

TEST_F(OperatorE2e, AnOperatorRestartedMidMigrationResumesItFromTheStatus) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  Shell cordon = kubectl("cordon " + controllers::pod_node(pods()[0]));
  ASSERT_EQ(cordon.code, 0);
  // Stop the operator as soon as the migration has a target Pod, before it ends.
  ASSERT_TRUE(wait_phase("TargetLoading"));
  operator_.reset();
  const std::string phase_at_stop = migrations()[0].value("/status/phase"_json_pointer, std::string());
  EXPECT_NE(phase_at_stop, "Completed");
  std::this_thread::sleep_for(500ms);
  start_operator();
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(migrations().size(), 1u) << "the restarted operator made no second migration";
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2));
}

TEST_F(OperatorE2e, ATargetThatDiesBeforeTheSwitchRollsBackAndTheSourceKeepsServing) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  const json source = pods()[0];
  Shell cordon = kubectl("cordon " + controllers::pod_node(source));
  ASSERT_EQ(cordon.code, 0);
  // The target's agent is killed (SIGKILL) while it loads the model or pre-copy runs.
  std::string target;
  ASSERT_NO_FATAL_FAILURE(kill_target_agent_before_the_switch(&target));
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Failed") << done.dump(2);
  EXPECT_NE(done["status"].value("message", std::string()).find("rolled back"), std::string::npos) << done.dump(2);
  std::vector<std::string> phases;
  for (const auto& t : done["status"]["phaseTimings"]) phases.push_back(t["phase"]);
  ASSERT_FALSE(phases.empty());
  EXPECT_EQ(phases.back(), "RollingBack");
  // The target Pod went; the source still serves its streams.
  EXPECT_TRUE(eventually([&] { return !client().get(pods_ref().in("default").named(target)).ok() ||
                                      client().get(pods_ref().in("default").named(target))->contains(
                                          "/metadata/deletionTimestamp"_json_pointer); },
                         20s));
  auto src = client().get(pods_ref().in("default").named(kube::object_name(source)));
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(controllers::pod_condition(*src, controllers::kServingGate), "True");
  expect_clients_saw_nothing(load.get());
  // The node is still cordoned, but the replica is tried again only after a backoff (30 s).
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(migrations().size(), 1u) << "a failed migration is not retried at once";
}

TEST_F(OperatorE2e, AGpuFaultReportedByAnAgentMovesItsReplicaAndMarksTheNode) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  const json source = pods()[0];
  const std::string node = controllers::pod_node(source);
  auto token = controllers::token_from_secret(*client().get(controllers::secrets_ref().in("default").named("tiny-control-token")));
  ASSERT_TRUE(token.ok());
  Shell injected = run("curl -sf -X POST -H 'Authorization: Bearer " + *token + "' -d '{\"kind\":\"xid\",\"message\":\"Xid 79\"}' " +
                       controllers::agent_url(source) + "/control/v1/faults");
  ASSERT_EQ(injected.code, 0) << injected.output;
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(done["spec"]["reason"], "GpuHealth");
  EXPECT_EQ(done["status"]["sourcePod"], kube::object_name(source));
  EXPECT_NE(done["status"]["targetNode"], node);
  auto n = client().get(controllers::nodes_ref().named(node));
  ASSERT_TRUE(n.ok());
  EXPECT_NE(controllers::annotation(*n, controllers::kGpuFaultAnnotation).find("Xid 79"), std::string::npos) << n->dump(2);
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2));
  for (const auto& p : pods()) EXPECT_NE(controllers::pod_node(p), node);
}

// kubectl drain evicts; the PodDisruptionBudget refuses the eviction (429) until the operator,
// triggered by the drain's cordon, has moved the replica live and deleted it; then the drain ends.
TEST_F(OperatorE2e, ADrainWaitsForTheLiveMigrationAndThenCompletes) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  const json source = pods()[0];
  const std::string node = controllers::pod_node(source);
  auto drain = std::async(std::launch::async, [&] { return kubectl("drain " + node + " --ignore-daemonsets --timeout=90s"); });
  const json done = wait_migration_end(90s);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(done["spec"]["reason"], "Maintenance");
  Shell drained = drain.get();
  EXPECT_EQ(drained.code, 0) << drained.output;
  EXPECT_NE(drained.output.find("disruption budget"), std::string::npos) << "the budget held the eviction:\n"
                                                                         << drained.output;
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2));
  for (const auto& p : pods()) EXPECT_NE(controllers::pod_node(p), node);
}

// Load: one replica on a t4-sim card with room for one sequence; eight requests, four at a time,
// keep its queue full for several resyncs, longer than sustainSeconds, so it moves to the faster a100-sim; once the load has
// ended and the queue stayed empty, it moves back to the cheaper t4-sim.
TEST_F(OperatorE2e, LoadPressureMovesAReplicaToAFasterClassAndQuietBackToACheaperOne) {
  json md_object = deployment(1);
  md_object["spec"]["engine"]["maxNumSeqs"] = 1;
  md_object["spec"]["migration"]["triggers"] = {{"load", true}};
  md_object["spec"]["migration"]["loadPolicy"] = {{"fasterClasses", {"a100-sim"}}, {"cheaperClasses", {"t4-sim"}},
                                                  {"queueDepthHigh", 2}, {"queueDepthLow", 0},
                                                  {"sustainSeconds", 1}, {"cooldownSeconds", 0}};
  deploy(md_object);
  ASSERT_EQ(pods().size(), 1u);
  auto class_of = [&](const std::string& node) {
    auto n = client().get(controllers::nodes_ref().named(node));
    return n.ok() ? controllers::label(*n, controllers::kGpuClassLabel) : std::string();
  };
  ASSERT_EQ(class_of(controllers::pod_node(pods()[0])), "t4-sim");
  auto load = start_load();
  json up;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& m : migrations())
          if (m.value("/status/phase"_json_pointer, std::string()) == "Completed") up = m;
        return !up.is_null();
      },
      60s))
      << "load " << (load.wait_for(0s) == std::future_status::ready ? "ended" : "running") << "; migrations "
      << json(migrations()).dump() << "; deployment " << md().dump() << "; operator metrics:\n"
      << operator_->metrics_text();
  EXPECT_EQ(up["spec"]["reason"], "Load");
  EXPECT_EQ(up["status"]["targetGpuClass"], "a100-sim") << up.dump(2);
  expect_clients_saw_nothing(load.get());
  // Quiet now: back to the cheaper class.
  json down;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& m : migrations())
          if (m["metadata"]["name"] != up["metadata"]["name"] &&
              m.value("/status/phase"_json_pointer, std::string()) == "Completed")
            down = m;
        return !down.is_null();
      },
      60s));
  EXPECT_EQ(down["spec"]["reason"], "Load");
  EXPECT_EQ(down["status"]["targetGpuClass"], "t4-sim") << down.dump(2);
  EXPECT_TRUE(wait_ready(1));
}

// A new version of spec.engine: every replica is replaced by a migration to a Pod of the new
// version, one at a time (maxConcurrent 1), in KV mode since the KV layout did not change.
TEST_F(OperatorE2e, AChangedSpecRollsEveryReplicaOverByLiveMigration) {
  deploy(2);
  std::set<std::string> old_pods;
  for (const auto& p : pods()) old_pods.insert(kube::object_name(p));
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  Status patched = patch_spec({{"engine", {{"maxNumSeqs", 16}}}});
  ASSERT_TRUE(patched.ok()) << patched.to_string();
  const std::vector<json> done = wait_completed(2);
  ASSERT_EQ(done.size(), 2u) << done.size() << " migrations completed";
  for (const auto& m : done) {
    EXPECT_EQ(m["spec"]["reason"], "Version");
    EXPECT_EQ(m["status"]["mode"], "KV") << m.dump(2);
  }
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2));
  const std::string want = controllers::model_hash(*controllers::parse_deployment(md()));
  ASSERT_EQ(pods().size(), 2u);
  for (const auto& p : pods()) {
    EXPECT_FALSE(old_pods.count(kube::object_name(p))) << kube::object_name(p) << " is of the old version";
    EXPECT_EQ(controllers::annotation(p, controllers::kModelHashAnnotation), want);
    const auto cmd = p["spec"]["containers"][0]["command"].dump();
    EXPECT_NE(cmd.find("\"--max-num-seqs\",\"16\""), std::string::npos) << cmd;
  }
  EXPECT_EQ(migrations().size(), 2u);
}

// New weights (spec.model.path and revision): the KV cache of the old weights means nothing to the
// new ones, so the rolling migration recomputes: the target re-runs each sequence's prefill from
// its token ids and continues with the new model. No stream is cut; the tokens after the switch
// are the new version's.
TEST_F(OperatorE2e, NewWeightsRollOverInRecomputeModeWithoutCuttingAStream) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  Status patched = patch_spec({{"model", {{"path", "models/tiny-v2"}, {"revision", "v2"}}}});
  ASSERT_TRUE(patched.ok()) << patched.to_string();
  const std::vector<json> done = wait_completed(2);
  ASSERT_EQ(done.size(), 2u) << done.size() << " migrations completed; "
                             << (migrations().empty() ? "" : migrations()[0].dump(2));
  for (const auto& m : done) {
    EXPECT_EQ(m["spec"]["reason"], "Version");
    EXPECT_EQ(m["status"]["mode"], "Recompute") << m.dump(2);
  }
  expect_clients_saw_nothing(load.get(), /*exact=*/false);
  EXPECT_TRUE(wait_ready(2));
  for (const auto& p : pods()) {
    const auto cmd = p["spec"]["containers"][0]["command"].dump();
    EXPECT_NE(cmd.find("tiny-v2"), std::string::npos) << cmd;
  }
}

// A flag the operator cannot read stops it before it touches the cluster, naming the flag.
TEST(OperatorProcess, ABadFlagExitsTwoNamingIt) {
  const std::string bin = HOTSWAP_OPERATOR_BIN;
  for (const auto& [args, want] : std::vector<std::pair<std::string, std::string>>{
           {"--network-policy=maybe", "--network-policy must be true or false, got 'maybe'"},
           {"--migration-tls=off", "--migration-tls must be true or false, got 'off'"},
           {"--workers 0", "--workers must be in 1..64"},
           {"--metrics-port 70000", "--metrics-port must be in 0..65535"}}) {
    Shell r = run(bin + " --kubeconfig /nonexistent " + args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << args << ": " << r.output;
  }
  Shell help = run(bin + " --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.output.find("--network-policy"), std::string::npos) << help.output;
}

// Two hotswap-operator processes with --leader-elect: one leads. It is killed with SIGKILL in the
// middle of a migration; the other takes the Lease over once it expires and completes the
// migration from the resource's status.
TEST_F(OperatorE2e, KillingTheLeadingOperatorMidMigrationHandsItToTheStandbyWhichCompletesIt) {
  operator_.reset();  // this test runs the real binary, twice
  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i)
    pids.push_back(start_operator_process("operator-" + std::to_string(i) + ".log", "",
                                          "--leader-elect --leader-election-lease-duration 3 "
                                          "--leader-election-renew-deadline 2 --leader-election-retry-period 0.5"));
  auto stop_all = [&] {
    for (pid_t p : pids) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    pids.clear();
  };
  struct Reaper {  // an ASSERT that returns early must not leave the operators running
    std::function<void()> f;
    ~Reaper() { f(); }
  } reaper{stop_all};
  auto holder = [&] {
    auto lease = client().get(kube::ResourceRef::of("coordination.k8s.io", "v1", "leases").in("default").named("hotswap-operator"));
    return lease.ok() ? lease->value("/spec/holderIdentity"_json_pointer, std::string()) : std::string();
  };
  deploy(2);
  const std::string first = holder();
  ASSERT_FALSE(first.empty());
  pid_t leader = -1;
  for (pid_t p : pids)
    if (first.size() > std::to_string(p).size() && first.substr(first.rfind('-') + 1) == std::to_string(p)) leader = p;
  ASSERT_NE(leader, -1) << "the Lease names " << first;
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  ASSERT_EQ(kubectl("cordon " + controllers::pod_node(pods()[0])).code, 0);
  ASSERT_TRUE(wait_phase("TargetLoading"));
  ::kill(leader, SIGKILL);
  ::waitpid(leader, nullptr, 0);
  pids.erase(std::find(pids.begin(), pids.end(), leader));
  const json done = wait_migration_end(60s);
  const std::string second = holder();
  stop_all();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_NE(second, first) << "the standby took the Lease over";
  EXPECT_EQ(migrations().size(), 1u);
  expect_clients_saw_nothing(load.get());
}

// A maintenance window on node-1 that opens in two minutes (within the five-minute lead): the
// replica there moves before it opens, to a node outside the window.
TEST_F(OperatorE2e, AMaintenanceWindowAboutToOpenMovesTheReplicasOffItsNodes) {
  deploy(2);
  std::string on_node1;
  for (const auto& p : pods())
    if (controllers::pod_node(p) == "node-1") on_node1 = kube::object_name(p);
  ASSERT_FALSE(on_node1.empty()) << "the scheduler spreads the two replicas over node-1 and node-2";
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  const std::string start = controllers::format_rfc3339(controllers::now_unix_ms() / 1000 + 120);
  const json window = {{"start", start},
                       {"durationMinutes", 30},
                       {"nodeSelector", {{"kubernetes.io/hostname", "node-1"}}}};
  Status patched = patch_spec({{"migration", {{"maintenanceWindows", json::array({window})}}}});
  ASSERT_TRUE(patched.ok()) << patched.to_string();
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(done["spec"]["reason"], "Schedule");
  EXPECT_EQ(done["status"]["sourcePod"], on_node1);
  EXPECT_EQ(done["status"]["targetNode"], "node-3");
  expect_clients_saw_nothing(load.get());
  EXPECT_EQ(migrations().size(), 1u) << "the replica outside the window stays";
}

// What the schema cannot say (here: queueDepthLow must be below queueDepthHigh) the operator
// refuses: condition Degraded with the field named, an Event, and no Pod made.
TEST_F(OperatorE2e, ASpecTheSchemaAcceptsButTheOperatorCannotUseIsDegradedNamingTheField) {
  json bad = deployment(2);
  bad["spec"]["migration"]["loadPolicy"] = {{"queueDepthHigh", 4}, {"queueDepthLow", 4}};
  ASSERT_TRUE(client().create(deployments_ref().in("default"), bad).ok());
  std::string message;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& c : md().value("/status/conditions"_json_pointer, json::array()))
          if (c["type"] == "Degraded" && c["status"] == "True") message = c.value("message", std::string());
        return !message.empty();
      },
      20s))
      << md().dump(2);
  EXPECT_NE(message.find("spec.migration.loadPolicy"), std::string::npos) << message;
  EXPECT_NE(message.find("queueDepthLow"), std::string::npos) << message;
  EXPECT_TRUE(pods().empty());
  Shell events = kubectl("get events -o json");
  EXPECT_NE(events.output.find("InvalidSpec"), std::string::npos) << events.output;
  // Fixed, it goes on.
  Status patched = patch_spec({{"migration", {{"loadPolicy", {{"queueDepthLow", 1}}}}}});
  ASSERT_TRUE(patched.ok()) << patched.to_string();
  EXPECT_TRUE(wait_ready(2)) << md().dump(2);
}

TEST_F(OperatorE2e, ScalingDownUnderLoadHandsTheStreamsToTheRemainingReplica) {
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1500ms);
  Status patched = patch_spec({{"replicas", 1}});
  ASSERT_TRUE(patched.ok()) << patched.to_string();
  const json done = wait_migration_end();
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["status"]["phase"], "Completed") << done.dump(2);
  EXPECT_EQ(done["spec"]["reason"], "ScaleDown");
  EXPECT_TRUE(done["spec"]["target"].contains("pod")) << done.dump(2);
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(eventually([&] { return pods().size() == 1; }, 30s));
  EXPECT_TRUE(wait_ready(1));
}


// The operator installed as a platform team installs it: the Helm chart rendered by Helm's
// template engine (hotswap-helm-render) and applied with kubectl. Its Deployment's Pod runs
// hotswap-operator (the dev cluster runs commands, not images, so the chart's operator.command
// names the binary), which leads through its Lease and then serves a ModelDeployment.
class OperatorFromTheChartE2e : public OperatorE2e {
 protected:
  bool in_process_operator() const override { return false; }
};

TEST_F(OperatorFromTheChartE2e, TheRenderedChartAppliedToTheClusterRunsAnOperatorThatServesADeployment) {
  const std::string render = HOTSWAP_HELM_RENDER;
  ASSERT_FALSE(render.empty()) << "hotswap-helm-render was not built: scripts/install-deps.sh installs its Go packages";
  const int metrics_port = http::pick_free_port().value(), health_port = http::pick_free_port().value();
  const fs::path values = dir_ / "values.yaml";
  std::ofstream(values) << "operator:\n"
                        << "  command: [" << HOTSWAP_OPERATOR_BIN << "]\n"
                        << "  extraArgs: [--kubeconfig=" << kubeconfig_ << "]\n"
                        << "  metricsPort: " << metrics_port << "\n"
                        << "  healthPort: " << health_port << "\n"
                        << "  workers: 2\n"
                        << "agent:\n"
                        << "  command: " << HOTSWAP_AGENT_BIN << "\n"
                        << "  modelRoot: " << model_root().string() << "\n";
  const fs::path manifests = dir_ / "hotswap.yaml";
  Shell rendered = run(render + " --chart " + HOTSWAP_SOURCE_DIR + "/helm/hotswap --release hotswap --namespace "
                       "hotswap-system --include-crds -f " + values.string() + " > " + manifests.string());
  ASSERT_EQ(rendered.code, 0) << rendered.output;
  const fs::path ns = dir_ / "ns.yaml";
  std::ofstream(ns) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: hotswap-system}\n";
  Shell created = kubectl("apply -f " + ns.string());
  ASSERT_EQ(created.code, 0) << created.output;
  Shell applied = kubectl("apply -f " + manifests.string());
  ASSERT_EQ(applied.code, 0) << applied.output;
  for (const char* made : {"serviceaccount/hotswap created", "clusterrole.rbac.authorization.k8s.io/hotswap created",
                           "role.rbac.authorization.k8s.io/hotswap-leader-election created",
                           "deployment.apps/hotswap-operator created", "configmap/hotswap-dashboard created",
                           "customresourcedefinition.apiextensions.k8s.io/modeldeployments.hotswap.io unchanged"})
    EXPECT_NE(applied.output.find(made), std::string::npos) << made << "\n" << applied.output;

  // The operator Pod passes its readiness probe (/readyz: every informer synced) and leads.
  ASSERT_TRUE(eventually(
      [&] {
        return kubectl("get deploy hotswap-operator -n hotswap-system -o jsonpath={.status.readyReplicas}").output ==
               "1";
      },
      60s))
      << kubectl("get pods -n hotswap-system -o wide").output;
  ASSERT_TRUE(eventually([&] { return kubectl("get lease hotswap -n hotswap-system").code == 0; }, 20s));

  deploy(2);  // served through its Service, every replica gated in by the operator in the Pod
  const auto ps = pods();
  ASSERT_EQ(ps.size(), 2u);
  for (const auto& p : ps) EXPECT_EQ(controllers::pod_condition(p, controllers::kServingGate), "True");
  Shell metrics = run("curl -sf http://" +
                      kubectl("get pods -n hotswap-system -l app.kubernetes.io/component=operator "
                              "-o jsonpath={.items[0].status.podIP}").output +
                      ":" + std::to_string(metrics_port) + "/metrics");
  EXPECT_NE(metrics.output.find("hotswap_operator_leader 1"), std::string::npos) << metrics.output;
}

}  // namespace
}  // namespace hotswap
