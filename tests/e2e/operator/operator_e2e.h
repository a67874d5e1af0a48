// The operator end to end on the dev cluster, shared by its test binaries: three GPU nodes
// (node-1 and node-2 t4-sim at a quarter of the a100-sim's speed, node-3 a100-sim), the CRDs
// applied with kubectl, the operator in-process (or as processes the test starts), a
// ModelDeployment of the synthetic `tiny` checkpoint, and streaming load through the Service
// with the load generator, checked against an unmigrated run.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

namespace hotswap::operator_e2e {

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

inline Shell run(const std::string& command) {
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
inline const fs::path& model_root() {
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

  // Kills (SIGKILL) the target's agent of the only migration once it is in TargetLoading or
  // PreCopy, and names its Pod in *target; an ASSERT failure here stops the test.
  void kill_target_agent_before_the_switch(std::string* target_out = nullptr) {
    std::string target;
    ASSERT_TRUE(eventually(
        [&] {
          for (const auto& m : migrations()) {
            const std::string phase = m.value("/status/phase"_json_pointer, std::string());
            if (phase == "TargetLoading" || phase == "PreCopy")
              target = m.value("/status/targetPod"_json_pointer, std::string());
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
    if (target_out) *target_out = target;
  }

  // The real hotswap-operator binary as a process of its own, on this cluster, its output in
  // dir_/<log_name>. env: "NAME=value ..." set for it alone; args: flags beyond the usual.
  pid_t start_operator_process(const std::string& log_name, const std::string& env = "",
                               const std::string& args = "") {
    const std::string cmd = std::string(HOTSWAP_OPERATOR_BIN) + " --kubeconfig " + kubeconfig_ +
                            " --metrics-port 0 --health-port 0 --workers 2 --agent-command " + HOTSWAP_AGENT_BIN +
                            " --model-root " + model_root().string() + " " + args;
    const std::string log = (dir_ / log_name).string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", ("exec env " + env + " " + cmd + " > " + log + " 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
    return pid;
  }

  fs::path dir_;
  std::string kubeconfig_;
  std::string cluster_ip_;
  std::unique_ptr<devcluster::DevCluster> cluster_;
  std::unique_ptr<Operator> operator_;
};

}  // namespace hotswap::operator_e2e
