// hotswap-operator end to end on the dev cluster: three GPU nodes (node-1 and node-2 t4-sim at a
// quarter of the a100-sim's speed, node-3 a100-sim), the CRDs applied with kubectl, the operator
// running in-process, a ModelDeployment of the synthetic `tiny` checkpoint, and streaming load
// through the Service with the load generator. In every scenario the clients see no failed
// request and no missing or repeated token, and each request's token ids equal those of an
// unmigrated run (the same load against a lone agent).
//
// Labelled e2e, run alone: the dev cluster's Pod and ClusterIP addresses are fixed.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include "common/http.h"
#include "e2e/devcluster/cluster.h"
#include "e2e/loadgen/loadgen.h"
#include "e2e/loadgen/report.h"
#include "operator/controllers/cluster_view.h"
#include "operator/controllers/resources.h"
#include "operator/kube/object.h"
#include "operator/operator.h"

namespace hotswap {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;
using controllers::deployments_ref;
using controllers::migrations_ref;
using controllers::pods_ref;

struct Shell {
  int code = -1;
  std::string output;
};

Shell run(const std::string& command) {
  Shell r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// The synthetic checkpoint, made once per test binary.
const fs::path& model_root() {
  static const fs::path root = [] {
    fs::path r = fs::temp_directory_path() / ("hotswap-operator-e2e-models-" + std::to_string(::getpid()));
    fs::create_directories(r / "models");
    Shell made = run(std::string(HOTSWAP_AGENT_BIN) + " make-model --preset tiny --arch llama --seed 3 --out " +
                   (r / "models" / "tiny").string());
    EXPECT_EQ(made.code, 0) << made.output;
    // Another version: the same architecture and tokenizer, other weights.
    made = run(std::string(HOTSWAP_AGENT_BIN) + " make-model --preset tiny --arch llama --seed 4 --out " +
               (r / "models" / "tiny-v2").string());
    EXPECT_EQ(made.code, 0) << made.output;
    return r;
  }();
  return root;
}

class OperatorE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run("kubectl version --client").code != 0) GTEST_SKIP() << "kubectl is not installed (scripts/install-deps.sh)";
    dir_ = fs::temp_directory_path() / ("operator-e2e-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_root();
    devcluster::DevClusterOptions o;
    o.nodes = 3;
    o.log_dir = (dir_ / "logs").string();
    o.gpu_classes = {{"t4-sim", 1.0}, {"t4-sim", 1.0}, {"a100-sim", 4.0}};
    auto c = devcluster::DevCluster::start(o);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    cluster_ = std::move(c).value();
    kubeconfig_ = (dir_ / "kubeconfig").string();
    ASSERT_TRUE(cluster_->api_server().write_kubeconfig(kubeconfig_).ok());
    Shell applied = kubectl("apply -f " + std::string(HOTSWAP_SOURCE_DIR) + "/crds/");
    ASSERT_EQ(applied.code, 0) << applied.output;
    Shell established = kubectl("wait --for=condition=Established crd/modeldeployments.hotswap.io "
                              "crd/modelmigrations.hotswap.io --timeout=30s");
    ASSERT_EQ(established.code, 0) << established.output;
    if (in_process_operator()) start_operator();
  }
  // False where the test installs the operator itself (from the Helm chart).
  virtual bool in_process_operator() const { return true; }

  void TearDown() override {
    if (HasFailure() && fs::exists(dir_ / "logs")) {
      for (const auto& f : fs::directory_iterator(dir_ / "logs")) {
        std::ifstream in(f.path());
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::cerr << "-- " << f.path().filename().string() << ":\n" << text.substr(text.size() > 3000 ? text.size() - 3000 : 0);
      }
    }
    operator_.reset();
    cluster_.reset();
    fs::remove_all(dir_);
  }

  void start_operator(bool network_policy = true) {
    OperatorOptions o;
    o.runtime.network_policy = network_policy;
    o.runtime.command = HOTSWAP_AGENT_BIN;
    o.runtime.model_root = model_root().string();
    o.runtime.termination_grace_seconds = 10;
    o.workers = 2;
    o.informer_backoff = 100ms;
    // The load test's pressure lasts a few seconds on the slow class: poll load often enough
    // that a slow CI machine still sees it sustained (the default is every 2 s).
    o.agent_poll.load_period = 500ms;
    auto op = Operator::start(cluster_->client(), o);
    ASSERT_TRUE(op.ok()) << op.status().to_string();
    operator_ = std::move(op).value();
  }

  Shell kubectl(const std::string& args) { return run("KUBECONFIG=" + kubeconfig_ + " kubectl " + args); }
  const kube::RestClient& client() { return cluster_->client(); }

  json deployment(int replicas) {
    return json{{"apiVersion", "hotswap.io/v1alpha1"},
                {"kind", "ModelDeployment"},
                {"metadata", {{"name", "tiny"}, {"namespace", "default"}}},
                {"spec",
                 {{"model", {{"name", "tiny"}, {"path", "models/tiny"}}},
                  {"replicas", replicas},
                  {"gpuClasses", {"t4-sim", "a100-sim"}},
                  {"engine", {{"kvDtype", "f32"}}},
                  {"migration", {{"mode", "KV"}, {"downtimeBudgetMs", 50}, {"completionTimeoutSeconds", 60}}}}}};
  }

  // Applies the deployment and waits until `replicas` replicas serve.
  void deploy(int replicas) { deploy(deployment(replicas)); }
  void deploy(const json& md_object) {
    const int replicas = md_object["spec"]["replicas"].get<int>();
    auto r = client().create(deployments_ref().in("default"), md_object);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(wait_ready(replicas)) << md().dump(2);
    cluster_ip_ = client().get(controllers::services_ref().in("default").named("tiny"))->value(
        "/spec/clusterIP"_json_pointer, std::string());
    ASSERT_FALSE(cluster_ip_.empty());
    // The Service's endpoints follow the gates within a moment.
    ASSERT_TRUE(eventually([&] { return loadgen::fetch_first_model_id("http://" + cluster_ip_, 1).ok(); }, 10s));
  }

  bool wait_ready(int replicas) {
    return eventually([&] { return md().value("/status/readyReplicas"_json_pointer, -1) == replicas; }, 60s);
  }

  json md() {
    auto r = client().get(deployments_ref().in("default").named("tiny"));
    return r.ok() ? r.value() : json();
  }

  std::vector<json> pods() {
    std::vector<json> out;
    kube::ListOptions lo;
    lo.label_selector = "hotswap.io/deployment=tiny";
    auto l = client().list(pods_ref().in("default"), lo);
    if (l.ok())
      for (const auto& p : (*l)["items"])
        if (!p.contains("/metadata/deletionTimestamp"_json_pointer)) out.push_back(p);
    return out;
  }

  std::vector<json> migrations() {
    auto l = client().list(migrations_ref().in("default"));
    return l.ok() ? (*l)["items"].get<std::vector<json>>() : std::vector<json>{};
  }

  // The phase of the only ModelMigration once it ended (Completed or Failed), or "" at the timeout.
  json wait_migration_end(std::chrono::milliseconds limit = 60s) {
    json found;
    eventually(
        [&] {
          for (const auto& m : migrations()) {
            const std::string phase = m.value("/status/phase"_json_pointer, std::string());
            if (phase == "Completed" || phase == "Failed") {
              found = m;
              return true;
            }
          }
          return false;
        },
        limit);
    return found;
  }

  // Merge-patches the deployment's spec.
  Status patch_spec(const json& spec) {
    return client()
        .patch(deployments_ref().in("default").named("tiny"), kube::PatchType::kMerge, json{{"spec", spec}})
        .status();
  }

  // Until some ModelMigration is in `phase`.
  bool wait_phase(const std::string& phase, std::chrono::milliseconds limit = 30s) {
    return eventually(
        [&] {
          for (const auto& m : migrations())
            if (m.value("/status/phase"_json_pointer, std::string()) == phase) return true;
          return false;
        },
        limit);
  }

  // The Completed ModelMigrations once there are n of them (fewer at the timeout).
  std::vector<json> wait_completed(size_t n, std::chrono::milliseconds limit = 90s) {
    std::vector<json> done;
    eventually(
        [&] {
          done.clear();
          for (const auto& m : migrations())
            if (m.value("/status/phase"_json_pointer, std::string()) == "Completed") done.push_back(m);
          return done.size() >= n;
        },
        limit);
    return done;
  }

  loadgen::LoadgenConfig load_config(const std::string& url) {
    loadgen::LoadgenConfig c;
    c.url = url;
    c.streams = 4;
    c.requests = 8;
    c.max_tokens = 320;
    c.seed = 11;
    c.temperature = 0.7;
    c.ignore_eos = true;
    c.request_timeout_s = 60;
    return c;
  }

  std::future<StatusOr<loadgen::LoadRun>> start_load() {
    auto config = load_config("http://" + cluster_ip_);
    return std::async(std::launch::async, [config] { return loadgen::run_load(config); });
  }

  // Every request ok, no event id missing or repeated, and the tokens of an unmigrated run: the
  // same load against a lone agent on a loopback address of its own.
  void expect_clients_saw_nothing(const StatusOr<loadgen::LoadRun>& migrated, bool exact = true) {
    ASSERT_TRUE(migrated.ok()) << migrated.status().to_string();
    const auto summary = loadgen::summarize_run(*migrated);
    EXPECT_EQ(loadgen::exit_code(summary), 0) << loadgen::report_text(load_config(""), *migrated, summary);
    ASSERT_EQ(migrated->requests.size(), 8u);
    for (const auto& r : migrated->requests) {
      EXPECT_EQ(r.duplicate_ids + r.missing_ids + r.out_of_order_ids, 0) << "request " << r.index;
      EXPECT_EQ(r.token_ids.size(), 320u) << "request " << r.index << ": " << r.error;
    }
    if (!exact) return;
    auto port = http::pick_free_port();
    ASSERT_TRUE(port.ok());
    const std::string log = (dir_ / "reference.log").string();
    const std::string cmd = std::string(HOTSWAP_AGENT_BIN) + " serve --model " +
                            (model_root() / "models" / "tiny").string() +
                            " --model-name tiny --kv-dtype f32 --host 127.0.0.1 --port " + std::to_string(*port);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log + " 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
    const std::string url = "http://127.0.0.1:" + std::to_string(*port);
    ASSERT_TRUE(eventually([&] { return loadgen::fetch_first_model_id(url, 1).ok(); }, 20s));
    auto reference = loadgen::run_load(load_config(url));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ASSERT_TRUE(reference.ok()) << reference.status().to_string();
    ASSERT_EQ(reference->requests.size(), migrated->requests.size());
    for (size_t i = 0; i < reference->requests.size(); ++i)
      EXPECT_EQ(migrated->requests[i].token_ids, reference->requests[i].token_ids) << "request " << i;
  }

  fs::path dir_;
  std::string kubeconfig_;
  std::string cluster_ip_;
  std::unique_ptr<devcluster::DevCluster> cluster_;
  std::unique_ptr<Operator> operator_;
};

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
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& m : migrations()) {
          const std::string phase = m.value("/status/phase"_json_pointer, std::string());
          if (phase == "TargetLoading" || phase == "PreCopy") target = m.value("/status/targetPod"_json_pointer, std::string());
        }
        return !target.empty();
      },
      30s));
  std::string ip;
  ASSERT_TRUE(eventually(
      [&] {
        auto p = client().get(pods_ref().in("default").named(target));
        ip = p.ok() ? controllers::pod_ip(*p) : "";
        return !ip.empty();
      },
      10s));
  // "[-]-host" matches the agent's "--host" but not this pkill's own shell command line.
  Shell killed = run("pkill -KILL -f -- '[-]-host " + ip + " --port 8000'");
  ASSERT_EQ(killed.code, 0) << "no agent process found for " << ip << ": " << killed.output;
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
  for (int i = 0; i < 2; ++i) {
    const std::string log = (dir_ / ("operator-" + std::to_string(i) + ".log")).string();
    const std::string cmd = std::string(HOTSWAP_OPERATOR_BIN) + " --kubeconfig " + kubeconfig_ +
                            " --leader-elect --leader-election-lease-duration 3 --leader-election-renew-deadline 2"
                            " --leader-election-retry-period 0.5 --metrics-port 0 --health-port 0 --workers 2"
                            " --agent-command " + HOTSWAP_AGENT_BIN + " --model-root " + model_root().string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log + " 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
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
