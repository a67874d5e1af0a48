// The dev cluster kubelet against the dev cluster's API server, with real processes: the Node and
// its Lease, Pods on their own loopback IPs with the downward API in their environment, phases
// and restarts per restartPolicy with CrashLoopBackOff, probes, readiness gates, graceful
// deletion, GPU admission, and the pure pieces (status merge, Ready, probes, environment).
#include <gtest/gtest.h>  // before cpprest, whose U() macro breaks gtest
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "common/http.h"
#include "e2e/devcluster/apiserver/api_server.h"
#include "e2e/devcluster/nodes/kubelet.h"
#include "e2e/devcluster/nodes/kubelet_container_env.h"
#include "e2e/devcluster/nodes/kubelet_pod_status.h"
#include "e2e/devcluster/nodes/kubelet_probes.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

const kube::ResourceRef kPods = kube::ResourceRef::core("pods").in("default");
const kube::ResourceRef kNodes = kube::ResourceRef::core("nodes");

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(25ms);
  }
  return pred();
}

std::string condition_status(const json& object, const std::string& type) {
  for (const auto& c : object.value("/status/conditions"_json_pointer, json::array()))
    if (c.value("type", std::string()) == type) return c.value("status", std::string());
  return "";
}

json condition(const json& object, const std::string& type) {
  for (const auto& c : object.value("/status/conditions"_json_pointer, json::array()))
    if (c.value("type", std::string()) == type) return c;
  return nullptr;
}

std::string phase(const json& pod) {
  return pod.value("/status/phase"_json_pointer, std::string());
}

json container_status(const json& pod) {
  const json statuses = pod.value("/status/containerStatuses"_json_pointer, json::array());
  return statuses.empty() ? json() : statuses[0];
}

// A Pod on `node` whose one container runs `sh -c script`.
json shell_pod(const std::string& name, const std::string& script, const std::string& restart_policy = "Always",
               const std::string& node = "node-1") {
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", name}, {"labels", {{"app", name}}}}},
      {"spec",
       {{"nodeName", node},
        {"restartPolicy", restart_policy},
        {"terminationGracePeriodSeconds", 5},
        {"containers",
         json::array({{{"name", "app"}, {"image", "local/test"}, {"command", json::array({"sh", "-c", script})}}})}}}};
}

json with_gpus(json pod, int gpus) {
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"nvidia.com/gpu", std::to_string(gpus)}}}};
  return pod;
}

bool pid_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

// "pid=1234" from a log.
pid_t logged_pid(const std::string& log) {
  const size_t at = log.find("pid=");
  return at == std::string::npos ? -1 : static_cast<pid_t>(std::atoi(log.c_str() + at + 4));
}

class KubeletTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kubelet-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    start_server({});
    ips_ = std::make_shared<PodIpAllocator>();
  }
  void TearDown() override {
    kubelets_.clear();
    client_.reset();
    if (server_) server_->stop();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start_server(ApiServerOptions options) {
    auto s = ApiServer::start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(*s);
    kube::ClusterConfig config;
    config.server = server_->url();
    auto c = kube::RestClient::create(config, kube::RestClientOptions{5000ms});
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    client_ = std::move(*c);
  }
  KubeletOptions options(const std::string& node = "node-1", const std::string& node_ip = "127.0.1.1") {
    KubeletOptions o;
    o.node_name = node;
    o.node_ip = node_ip;
    o.pod_ips = ips_;
    o.log_dir = (dir_ / "logs").string();
    o.capacity = {{"nvidia.com/gpu", "1"}, {"cpu", "4"}, {"memory", "16Gi"}, {"pods", "20"}};
    o.status_interval = 200ms;
    o.restart_backoff_initial = 200ms;
    o.restart_backoff_max = 800ms;
    o.stop_grace_max = 3s;
    return o;
  }
  Kubelet& start_kubelet(KubeletOptions o) {
    kubelets_.push_back(std::make_unique<Kubelet>(*client_, std::move(o)));
    const Status st = kubelets_.back()->start();
    EXPECT_TRUE(st.ok()) << st.to_string();
    return *kubelets_.back();
  }
  std::string log_of(const std::string& pod, const std::string& container = "app") const {
    return slurp((dir_ / "logs" / ("default_" + pod + "_" + container + ".log")).string());
  }
  void create(const json& pod) {
    auto r = client_->create(kPods, pod);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }
  json get(const std::string& name) {
    auto r = client_->get(kPods.named(name));
    return r.ok() ? r.value() : json();
  }
  // The Pod once pred holds (polled), or null after the limit.
  json wait_for(const std::string& name, const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds limit = 10s) {
    json last;
    const bool ok = eventually(
        [&] {
          last = get(name);
          return !last.is_null() && pred(last);
        },
        limit);
    if (!ok) ADD_FAILURE() << "pod " << name << " never matched; last seen: " << last.dump();
    return ok ? last : json();
  }
  json wait_running(const std::string& name) {
    return wait_for(name,
                    [](const json& p) { return phase(p) == "Running" && condition_status(p, "Ready") == "True"; });
  }
  bool gone(const std::string& name) {
    auto r = client_->get(kPods.named(name));
    return !r.ok() && r.error().is_not_found();
  }

  std::filesystem::path dir_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<kube::RestClient> client_;
  std::shared_ptr<PodIpAllocator> ips_;
  std::vector<std::unique_ptr<Kubelet>> kubelets_;
};

TEST_F(KubeletTest, RegistersAReadyNodeKeepsItsSpecAndRenewsItsLease) {
  // A node object already there (cordoned, labelled by someone else) keeps its spec and labels.
  ASSERT_TRUE(client_
                  ->create(kNodes, {{"apiVersion", "v1"},
                                    {"kind", "Node"},
                                    {"metadata", {{"name", "node-1"}, {"labels", {{"keep", "me"}}}}},
                                    {"spec", {{"unschedulable", true}}}})
                  .ok());
  KubeletOptions o = options();
  o.labels = {{"nvidia.com/gpu.product", "sim-gpu"}};
  Kubelet& kubelet = start_kubelet(o);
  auto node = client_->get(kNodes.named("node-1"));
  ASSERT_TRUE(node.ok()) << node.status().to_string();
  const json ready = condition(*node, "Ready");
  ASSERT_FALSE(ready.is_null()) << node->dump();
  EXPECT_EQ(ready["status"], "True");
  EXPECT_EQ(ready["reason"], "KubeletReady");
  EXPECT_EQ(condition_status(*node, "MemoryPressure"), "False");
  EXPECT_EQ((*node)["spec"].value("unschedulable", false), true);
  EXPECT_EQ((*node)["metadata"]["labels"]["keep"], "me");
  EXPECT_EQ((*node)["metadata"]["labels"]["nvidia.com/gpu.product"], "sim-gpu");
  EXPECT_EQ((*node)["metadata"]["labels"]["kubernetes.io/hostname"], "node-1");
  EXPECT_EQ((*node)["status"]["capacity"]["nvidia.com/gpu"], "1");
  EXPECT_EQ((*node)["status"]["allocatable"]["memory"], "16Gi");
  EXPECT_EQ((*node)["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0-hotswap");
  EXPECT_EQ((*node)["status"]["nodeInfo"]["operatingSystem"], "linux");
  const json addresses = (*node)["status"]["addresses"];
  EXPECT_NE(std::find(addresses.begin(), addresses.end(), json{{"type", "InternalIP"}, {"address", "127.0.1.1"}}),
            addresses.end())
      << addresses.dump();
  EXPECT_NE(std::find(addresses.begin(), addresses.end(), json{{"type", "Hostname"}, {"address", "node-1"}}),
            addresses.end());

  const auto lease_ref =
      kube::ResourceRef::of("coordination.k8s.io", "v1", "leases").in("kube-node-lease").named("node-1");
  auto lease = client_->get(lease_ref);
  ASSERT_TRUE(lease.ok()) << lease.status().to_string();
  EXPECT_EQ((*lease)["spec"]["holderIdentity"], "node-1");
  const std::string renewed = (*lease)["spec"]["renewTime"];
  EXPECT_TRUE(eventually(
      [&] {
        auto l = client_->get(lease_ref);
        return l.ok() && (*l)["spec"]["renewTime"] != renewed;
      },
      3s));
  const std::string heartbeat = ready["lastHeartbeatTime"];
  EXPECT_TRUE(eventually(
      [&] {
        auto n = client_->get(kNodes.named("node-1"));
        return n.ok() && condition(*n, "Ready")["lastHeartbeatTime"] != heartbeat;
      },
      3s));
  EXPECT_EQ(condition(*client_->get(kNodes.named("node-1")), "Ready")["lastTransitionTime"],
            ready["lastTransitionTime"]);

  kubelet.stop();
  auto stopped = client_->get(kNodes.named("node-1"));
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(condition_status(*stopped, "Ready"), "False");
  EXPECT_EQ(condition(*stopped, "Ready")["reason"], "KubeletNotReady");
}

TEST_F(KubeletTest, RunsAPodOnItsOwnLoopbackIpAndLogsItsOutput) {
  start_kubelet(options());
  create(shell_pod("web", "echo $POD_IP; sleep 30"));
  const json pod = wait_running("web");
  ASSERT_FALSE(pod.is_null());
  const std::string ip = pod["status"]["podIP"];
  ASSERT_EQ(ip.rfind("127.0.1.", 0), 0u) << ip;
  const int n = std::atoi(ip.c_str() + 8);
  EXPECT_GE(n, 10);
  EXPECT_LE(n, 250);
  EXPECT_EQ(pod["status"]["podIPs"], json::array({{{"ip", ip}}}));
  EXPECT_EQ(pod["status"]["hostIP"], "127.0.1.1");
  EXPECT_TRUE(pod["status"].contains("startTime"));
  const json cs = container_status(pod);
  EXPECT_EQ(cs["name"], "app");
  EXPECT_EQ(cs["image"], "local/test");
  EXPECT_EQ(cs["ready"], true);
  EXPECT_EQ(cs["started"], true);
  EXPECT_EQ(cs["restartCount"], 0);
  EXPECT_TRUE(cs["state"].contains("running")) << cs.dump();
  for (const char* type : {"PodScheduled", "Initialized", "ContainersReady", "Ready"})
    EXPECT_EQ(condition_status(pod, type), "True") << type;
  EXPECT_TRUE(eventually([&] { return log_of("web") == ip + "\n"; }, 3s)) << log_of("web");
  // Nothing changes, so nothing is written.
  const std::string rv = get("web")["metadata"]["resourceVersion"];
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(get("web")["metadata"]["resourceVersion"], rv);
}

TEST_F(KubeletTest, GivesContainersTheDownwardApiAndExpandsReferences) {
  start_kubelet(options());
  ASSERT_TRUE(client_
                  ->create(kube::ResourceRef::core("configmaps").in("default"), {{"apiVersion", "v1"},
                                                                                 {"kind", "ConfigMap"},
                                                                                 {"metadata", {{"name", "settings"}}},
                                                                                 {"data", {{"model", "tiny-llama"}}}})
                  .ok());
  json pod = shell_pod("env", "", "Never");
  json& c = pod["spec"]["containers"][0];
  c["command"] = {"sh", "-c",
                  "echo name=$MY_NAME ns=$MY_NS node=$MY_NODE ip=$MY_IP host=$MY_HOST; echo uid=$MY_UID; "
                  "echo greeting=$GREETING model=$MODEL; echo always=$POD_NAME/$POD_NAMESPACE/$NODE_NAME/$POD_IP; "
                  "echo arg=$0",
                  "$(MY_IP)"};
  auto field = [](const char* path) { return json{{"fieldRef", {{"fieldPath", path}}}}; };
  c["env"] = {{{"name", "MY_NAME"}, {"valueFrom", field("metadata.name")}},
              {{"name", "MY_NS"}, {"valueFrom", field("metadata.namespace")}},
              {{"name", "MY_UID"}, {"valueFrom", field("metadata.uid")}},
              {{"name", "MY_NODE"}, {"valueFrom", field("spec.nodeName")}},
              {{"name", "MY_IP"}, {"valueFrom", field("status.podIP")}},
              {{"name", "MY_HOST"}, {"valueFrom", field("status.hostIP")}},
              {{"name", "GREETING"}, {"value", "hi-$(MY_NAME)"}},
              {{"name", "MODEL"}, {"valueFrom", {{"configMapKeyRef", {{"name", "settings"}, {"key", "model"}}}}}}};
  create(pod);
  const json done = wait_for("env", [](const json& p) { return phase(p) == "Succeeded"; });
  ASSERT_FALSE(done.is_null());
  const std::string ip = done["status"]["podIP"];
  const std::string uid = done["metadata"]["uid"];
  EXPECT_EQ(log_of("env"), "name=env ns=default node=node-1 ip=" + ip + " host=127.0.1.1\nuid=" + uid +
                               "\ngreeting=hi-env model=tiny-llama\nalways=env/default/node-1/" + ip + "\narg=" + ip +
                               "\n");
}

TEST_F(KubeletTest, ExitedContainersEndThePodPerRestartPolicy) {
  start_kubelet(options());
  create(shell_pod("ok", "exit 0", "Never"));
  create(shell_pod("bad", "exit 3", "Never"));
  json retry_pod = shell_pod("retry", "if [ -f retried ]; then exit 0; fi; touch retried; exit 1", "OnFailure");
  retry_pod["spec"]["containers"][0]["workingDir"] = dir_.string();
  create(retry_pod);
  const json ok = wait_for("ok", [](const json& p) { return phase(p) == "Succeeded"; });
  ASSERT_FALSE(ok.is_null());
  const json ok_cs = container_status(ok);
  EXPECT_EQ(ok_cs["state"]["terminated"]["exitCode"], 0);
  EXPECT_EQ(ok_cs["state"]["terminated"]["reason"], "Completed");
  EXPECT_EQ(ok_cs["ready"], false);
  EXPECT_EQ(condition_status(ok, "Ready"), "False");
  EXPECT_EQ(condition(ok, "Ready")["reason"], "PodCompleted");
  const json bad = wait_for("bad", [](const json& p) { return phase(p) == "Failed"; });
  ASSERT_FALSE(bad.is_null());
  EXPECT_EQ(container_status(bad)["state"]["terminated"]["exitCode"], 3);
  EXPECT_EQ(container_status(bad)["state"]["terminated"]["reason"], "Error");
  EXPECT_EQ(container_status(bad)["restartCount"], 0);
  // OnFailure: the failure is retried, the success is not.
  const json retry = wait_for("retry", [](const json& p) { return phase(p) == "Succeeded"; });
  ASSERT_FALSE(retry.is_null());
  EXPECT_EQ(container_status(retry)["restartCount"], 1);
  EXPECT_EQ(container_status(retry)["lastState"]["terminated"]["exitCode"], 1);
  // Finished Pods give their IPs back.
  EXPECT_TRUE(eventually([&] { return ips_->in_use() == 0; }, 3s)) << ips_->in_use();
}

TEST_F(KubeletTest, CrashingContainerBacksOffAndCountsRestarts) {
  start_kubelet(options());
  create(shell_pod("crash", "echo run; exit 1", "Always"));
  bool saw_backoff = false;
  std::string backoff_message;
  const json pod = wait_for("crash", [&](const json& p) {
    const json cs = container_status(p);
    if (cs.is_null()) return false;
    if (cs["state"].contains("waiting") && cs["state"]["waiting"].value("reason", "") == "CrashLoopBackOff") {
      saw_backoff = true;
      backoff_message = cs["state"]["waiting"].value("message", "");
    }
    // Between two crashes the container runs, and without a readiness probe it is ready then:
    // look at a moment where it waits in back-off.
    return saw_backoff && cs.value("restartCount", 0) >= 3 && cs["state"].contains("waiting");
  }, 20s);
  ASSERT_FALSE(pod.is_null());
  EXPECT_EQ(phase(pod), "Running");
  EXPECT_EQ(condition_status(pod, "Ready"), "False");
  EXPECT_EQ(container_status(pod)["lastState"]["terminated"]["exitCode"], 1);
  EXPECT_NE(backoff_message.find("restarting failed container=app pod=crash_default("), std::string::npos)
      << backoff_message;
  const std::string log = log_of("crash");
  // Three runs have ended (restartCount 3); the fourth may not have written yet.
  EXPECT_GE(std::count(log.begin(), log.end(), '\n'), 3) << log;
}

TEST_F(KubeletTest, ContainerWithoutACommandFailsWithNoCommand) {
  start_kubelet(options());
  json pod = shell_pod("image-only", "", "Always");
  pod["spec"]["containers"][0].erase("command");
  create(pod);
  const json failed = wait_for("image-only", [](const json& p) { return phase(p) == "Failed"; });
  ASSERT_FALSE(failed.is_null());
  EXPECT_EQ(container_status(failed)["state"]["terminated"]["reason"], "NoCommand");
}

TEST_F(KubeletTest, HttpReadinessProbeGatesReady) {
  start_kubelet(options());
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  json pod = shell_pod("http", "sleep 1; exec python3 -m http.server --bind $(POD_IP) " + std::to_string(*port));
  json& c = pod["spec"]["containers"][0];
  c["workingDir"] = dir_.string();
  c["ports"] = {{{"name", "http"}, {"containerPort", *port}}};
  c["readinessProbe"] = {{"httpGet", {{"path", "/"}, {"port", "http"}}}, {"periodSeconds", 1}, {"failureThreshold", 1}};
  create(pod);
  // Running before the server listens: not ready.
  const json starting = wait_for(
      "http", [](const json& p) { return phase(p) == "Running" && container_status(p)["state"].contains("running"); });
  ASSERT_FALSE(starting.is_null());
  EXPECT_EQ(condition_status(starting, "Ready"), "False");
  EXPECT_EQ(condition(starting, "ContainersReady")["reason"], "ContainersNotReady");
  EXPECT_EQ(condition(starting, "ContainersReady")["message"], "containers with unready status: [app]");
  const json ready = wait_for("http", [](const json& p) { return condition_status(p, "Ready") == "True"; });
  ASSERT_FALSE(ready.is_null());
  EXPECT_EQ(container_status(ready)["ready"], true);
}

TEST_F(KubeletTest, ExecReadinessProbeFollowsItsCommand) {
  start_kubelet(options());
  const std::string flag = (dir_ / "ready").string();
  json pod = shell_pod("exec", "sleep 30");
  pod["spec"]["containers"][0]["readinessProbe"] = {
      {"exec", {{"command", {"test", "-f", flag}}}}, {"periodSeconds", 1}, {"failureThreshold", 1}};
  create(pod);
  const json not_ready = wait_for(
      "exec", [](const json& p) { return phase(p) == "Running" && container_status(p)["state"].contains("running"); });
  ASSERT_FALSE(not_ready.is_null());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(condition_status(get("exec"), "Ready"), "False");
  std::ofstream(flag) << "ok";
  EXPECT_FALSE(wait_for(
                   "exec", [](const json& p) { return condition_status(p, "Ready") == "True"; }, 5s)
                   .is_null());
  std::filesystem::remove(flag);
  EXPECT_FALSE(wait_for(
                   "exec", [](const json& p) { return condition_status(p, "Ready") == "False"; }, 5s)
                   .is_null());
  EXPECT_EQ(container_status(get("exec"))["restartCount"], 0);  // readiness never restarts
}

TEST_F(KubeletTest, LivenessFailureRestartsTheContainer) {
  start_kubelet(options());
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  json pod = shell_pod("sick", "echo run; sleep 30");
  pod["spec"]["terminationGracePeriodSeconds"] = 1;
  pod["spec"]["containers"][0]["livenessProbe"] = {
      {"tcpSocket", {{"port", *port}}}, {"periodSeconds", 1}, {"failureThreshold", 1}};
  create(pod);
  const json restarted = wait_for("sick", [](const json& p) {
    const json cs = container_status(p);
    return !cs.is_null() && cs.value("restartCount", 0) >= 1 && cs["lastState"].contains("terminated");
  });
  ASSERT_FALSE(restarted.is_null());
  EXPECT_EQ(phase(restarted), "Running");
  EXPECT_NE(container_status(restarted)["lastState"]["terminated"]["exitCode"], 0);
}

TEST_F(KubeletTest, StartupProbeHoldsBackReadinessAndLiveness) {
  start_kubelet(options());
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  const std::string flag = (dir_ / "started").string();
  json pod = shell_pod("slow", "sleep 30");
  pod["spec"]["terminationGracePeriodSeconds"] = 1;
  json& c = pod["spec"]["containers"][0];
  c["startupProbe"] = {{"exec", {{"command", {"test", "-f", flag}}}}, {"periodSeconds", 1}, {"failureThreshold", 30}};
  // Fails whenever it runs: it must not run before the container has started.
  c["livenessProbe"] = {{"tcpSocket", {{"port", *port}}}, {"periodSeconds", 1}, {"failureThreshold", 1}};
  create(pod);
  const json starting = wait_for(
      "slow", [](const json& p) { return phase(p) == "Running" && container_status(p)["state"].contains("running"); });
  ASSERT_FALSE(starting.is_null());
  std::this_thread::sleep_for(1500ms);
  const json still = get("slow");
  EXPECT_EQ(container_status(still)["started"], false);
  EXPECT_EQ(container_status(still)["restartCount"], 0);
  EXPECT_EQ(condition_status(still, "Ready"), "False");
  std::ofstream(flag) << "ok";
  // Started: now the liveness probe runs, fails, and the container is restarted.
  EXPECT_FALSE(wait_for(
                   "slow", [](const json& p) { return container_status(p).value("restartCount", 0) >= 1; }, 6s)
                   .is_null());
}

TEST_F(KubeletTest, HostNetworkPodsUseTheNodeIp) {
  start_kubelet(options());
  json pod = shell_pod("host", "echo $POD_IP; sleep 30");
  pod["spec"]["hostNetwork"] = true;
  create(pod);
  const json running = wait_running("host");
  ASSERT_FALSE(running.is_null());
  EXPECT_EQ(running["status"]["podIP"], "127.0.1.1");
  EXPECT_EQ(ips_->in_use(), 0u);
  EXPECT_TRUE(eventually([&] { return log_of("host") == "127.0.1.1\n"; }, 3s)) << log_of("host");
}

TEST_F(KubeletTest, ReadinessGateKeepsReadyFalseUntilItsConditionIsTrue) {
  start_kubelet(options());
  json pod = shell_pod("gated", "sleep 30");
  pod["spec"]["readinessGates"] = {{{"conditionType", "hotswap.io/serving"}}};
  create(pod);
  const json waiting =
      wait_for("gated", [](const json& p) { return condition_status(p, "ContainersReady") == "True"; });
  ASSERT_FALSE(waiting.is_null());
  EXPECT_EQ(condition_status(waiting, "Ready"), "False");
  EXPECT_EQ(condition(waiting, "Ready")["reason"], "ReadinessGatesNotReady");
  EXPECT_EQ(condition(waiting, "Ready")["message"],
            "corresponding condition of pod readiness gate \"hotswap.io/serving\" does not exist.");

  auto set_gate = [&](const char* status) {
    auto r = client_->patch(kPods.named("gated").sub("status"), kube::PatchType::kStrategicMerge,
                            {{"status", {{"conditions", {{{"type", "hotswap.io/serving"}, {"status", status}}}}}}});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  };
  set_gate("True");
  const json serving = wait_for(
      "gated", [](const json& p) { return condition_status(p, "Ready") == "True"; }, 5s);
  ASSERT_FALSE(serving.is_null());
  EXPECT_EQ(condition_status(serving, "hotswap.io/serving"), "True");  // the kubelet kept it
  set_gate("False");
  const json drained = wait_for(
      "gated", [](const json& p) { return condition_status(p, "Ready") == "False"; }, 5s);
  ASSERT_FALSE(drained.is_null());
  EXPECT_EQ(condition(drained, "Ready")["message"],
            "the status of pod readiness gate \"hotswap.io/serving\" is not \"True\", but False");
  EXPECT_EQ(condition_status(drained, "ContainersReady"), "True");
}

TEST_F(KubeletTest, DeletingAPodSendsSigtermThenRemovesIt) {
  start_kubelet(options());
  create(shell_pod("polite", "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done"));
  create(shell_pod("ignores-term", "trap '' TERM; echo pid=$$; while true; do sleep 0.1; done"));
  ASSERT_FALSE(wait_running("polite").is_null());
  ASSERT_FALSE(wait_running("ignores-term").is_null());
  ASSERT_TRUE(eventually([&] { return log_of("polite") == "started\n"; }, 3s));
  ASSERT_TRUE(eventually([&] { return logged_pid(log_of("ignores-term")) > 0; }, 3s));
  const pid_t ignorer = logged_pid(log_of("ignores-term"));
  EXPECT_EQ(ips_->in_use(), 2u);

  ASSERT_TRUE(client_->remove(kPods.named("polite")).ok());
  kube::DeleteOptions one_second;
  one_second.grace_period_seconds = 1;
  ASSERT_TRUE(client_->remove(kPods.named("ignores-term"), one_second).ok());
  EXPECT_TRUE(eventually([&] { return gone("polite"); }, 4s));
  EXPECT_NE(log_of("polite").find("got TERM\n"), std::string::npos) << log_of("polite");
  // Ignoring SIGTERM earns a SIGKILL once the grace period is over.
  EXPECT_TRUE(eventually([&] { return gone("ignores-term"); }, 4s));
  EXPECT_FALSE(pid_alive(ignorer));
  EXPECT_TRUE(eventually([&] { return ips_->in_use() == 0; }, 2s));
}

TEST_F(KubeletTest, PodDeletedOutrightIsKilledAtOnce) {
  Kubelet& kubelet = start_kubelet(options());
  create(shell_pod("doomed", "trap '' TERM; echo pid=$$; exec sleep 30"));
  ASSERT_FALSE(wait_running("doomed").is_null());
  ASSERT_TRUE(eventually([&] { return logged_pid(log_of("doomed")) > 0; }, 3s));
  const pid_t pid = logged_pid(log_of("doomed"));
  kube::DeleteOptions now;
  now.grace_period_seconds = 0;
  ASSERT_TRUE(client_->remove(kPods.named("doomed"), now).ok());
  EXPECT_TRUE(gone("doomed"));
  EXPECT_TRUE(eventually([&] { return !pid_alive(pid); }, 2s));
  EXPECT_TRUE(eventually([&] { return kubelet.pod_count() == 0; }, 2s));
}

TEST_F(KubeletTest, RejectsAPodThatNeedsMoreGpusThanTheNodeHasFree) {
  start_kubelet(options());  // one GPU
  create(with_gpus(shell_pod("first", "sleep 30"), 1));
  ASSERT_FALSE(wait_running("first").is_null());
  create(with_gpus(shell_pod("second", "sleep 30"), 1));
  const json second = wait_for("second", [](const json& p) { return phase(p) == "Failed"; });
  ASSERT_FALSE(second.is_null());
  EXPECT_EQ(second["status"]["reason"], "OutOfnvidia.com/gpu");
  EXPECT_EQ(second["status"]["message"],
            "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1, used: 1, capacity: 1");
  EXPECT_FALSE(second["status"].contains("podIP"));
  // Once the first is gone, its GPU is free again.
  kube::DeleteOptions now;
  now.grace_period_seconds = 0;
  ASSERT_TRUE(client_->remove(kPods.named("first"), now).ok());
  ASSERT_TRUE(eventually([&] { return ips_->in_use() == 0; }, 3s));
  create(with_gpus(shell_pod("third", "sleep 30"), 1));
  EXPECT_FALSE(wait_running("third").is_null());
}

TEST_F(KubeletTest, TwoKubeletsNeverShareAPodIp) {
  start_kubelet(options("node-a", "127.0.1.1"));
  start_kubelet(options("node-b", "127.0.1.2"));
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    for (const char* node : {"node-a", "node-b"}) {
      const std::string name = std::string(node) + "-" + std::to_string(i);
      create(shell_pod(name, "sleep 30", "Always", node));
      names.push_back(name);
    }
  }
  std::set<std::string> ips;
  for (const auto& name : names) {
    const json pod = wait_running(name);
    ASSERT_FALSE(pod.is_null());
    ips.insert(pod["status"]["podIP"].get<std::string>());
    EXPECT_EQ(pod["status"]["hostIP"], name.rfind("node-a", 0) == 0 ? "127.0.1.1" : "127.0.1.2");
  }
  EXPECT_EQ(ips.size(), names.size());
  EXPECT_EQ(ips_->in_use(), names.size());
}

TEST_F(KubeletTest, RelistDoesNotStartASecondCopy) {
  // A state file lets the API server come back with the same objects on the same port.
  const std::string state = (dir_ / "state.json").string();
  const int port = std::atoi(server_->url().substr(server_->url().rfind(':') + 1).c_str());
  server_->stop();
  server_.reset();
  ApiServerOptions api;
  api.port = port;
  api.state_file = state;
  start_server(api);
  Kubelet& kubelet = start_kubelet(options());
  create(shell_pod("steady", "echo started; sleep 30"));
  ASSERT_FALSE(wait_running("steady").is_null());
  std::this_thread::sleep_for(300ms);  // the state saver's moment
  const int64_t lists = kubelet.pod_list_count();

  server_->stop();
  server_.reset();
  std::this_thread::sleep_for(300ms);
  auto again = ApiServer::start(api);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  server_ = std::move(*again);
  ASSERT_TRUE(eventually([&] { return kubelet.pod_list_count() > lists; }, 15s)) << kubelet.pod_list_count();
  std::this_thread::sleep_for(500ms);
  const json pod = get("steady");
  EXPECT_EQ(phase(pod), "Running");
  EXPECT_EQ(container_status(pod)["restartCount"], 0);
  EXPECT_EQ(log_of("steady"), "started\n");
  EXPECT_EQ(ips_->in_use(), 1u);
}

TEST_F(KubeletTest, StopEndsContainersAndMarksTheNodeNotReady) {
  Kubelet& kubelet = start_kubelet(options());
  create(shell_pod("worker", "trap 'echo bye; exit 0' TERM; echo pid=$$; while true; do sleep 0.1; done"));
  ASSERT_FALSE(wait_running("worker").is_null());
  ASSERT_TRUE(eventually([&] { return logged_pid(log_of("worker")) > 0; }, 3s));
  const pid_t pid = logged_pid(log_of("worker"));
  kubelet.stop();
  EXPECT_FALSE(pid_alive(pid));
  EXPECT_NE(log_of("worker").find("bye\n"), std::string::npos);
  EXPECT_EQ(ips_->in_use(), 0u);
  EXPECT_EQ(condition_status(*client_->get(kNodes.named("node-1")), "Ready"), "False");
}

// ---- The pure pieces.

TEST(KubeletPodIps, HandOutEachAddressOnceRoundRobin) {
  PodIpAllocator ips("127.0.1.", 10, 12);
  EXPECT_EQ(*ips.allocate(), "127.0.1.10");
  EXPECT_EQ(*ips.allocate(), "127.0.1.11");
  EXPECT_EQ(*ips.allocate(), "127.0.1.12");
  auto none = ips.allocate();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kResourceExhausted);
  ips.release("127.0.1.11");
  ips.release("127.0.1.99");  // not ours: ignored
  EXPECT_EQ(ips.in_use(), 2u);
  EXPECT_EQ(*ips.allocate(), "127.0.1.11");
  ips.release("127.0.1.10");
  ips.release("127.0.1.12");
  EXPECT_EQ(*ips.allocate(), "127.0.1.12");  // after the last one handed out, not the lowest
}

TEST(KubeletPodStatus, MergeKeepsConditionsOthersOwn) {
  const json status = {{"phase", "Pending"},
                       {"qosClass", "BestEffort"},
                       {"conditions",
                        {{{"type", "hotswap.io/serving"}, {"status", "True"}},
                         {{"type", "Ready"}, {"status", "False"}, {"reason", "ContainersNotReady"}}}}};
  const json owned = {{"phase", "Running"},
                      {"podIP", "127.0.1.10"},
                      {"conditions",
                       {{{"type", "Ready"}, {"status", "True"}, {"lastTransitionTime", "t"}},
                        {{"type", "PodScheduled"}, {"status", "True"}, {"lastTransitionTime", "t"}}}}};
  const json merged = merge_pod_status(status, owned);
  EXPECT_EQ(merged["phase"], "Running");
  EXPECT_EQ(merged["qosClass"], "BestEffort");
  EXPECT_EQ(merged["conditions"], json({{{"type", "hotswap.io/serving"}, {"status", "True"}},
                                        {{"type", "Ready"}, {"status", "True"}, {"lastTransitionTime", "t"}},
                                        {{"type", "PodScheduled"}, {"status", "True"}, {"lastTransitionTime", "t"}}}));
  EXPECT_TRUE(pod_status_matches(merged, owned));
  EXPECT_FALSE(pod_status_matches(status, owned));
  json changed = merged;
  changed["conditions"][1]["status"] = "False";
  EXPECT_FALSE(pod_status_matches(changed, owned));
}

TEST(KubeletPodStatus, ReadyNeedsContainersAndEveryGate) {
  json pod = {{"spec", {{"readinessGates", {{{"conditionType", "a"}}, {{"conditionType", "b"}}}}}},
              {"status", {{"conditions", {{{"type", "a"}, {"status", "True"}}}}}}};
  EXPECT_EQ(pod_ready_condition(pod, false, "containers with unready status: [app]").reason, "ContainersNotReady");
  ConditionValue v = pod_ready_condition(pod, true, "");
  EXPECT_EQ(v.status, "False");
  EXPECT_EQ(v.reason, "ReadinessGatesNotReady");
  EXPECT_EQ(v.message, "corresponding condition of pod readiness gate \"b\" does not exist.");
  pod["status"]["conditions"].push_back({{"type", "b"}, {"status", "True"}});
  EXPECT_EQ(pod_ready_condition(pod, true, "").status, "True");
  EXPECT_EQ(pod_ready_condition(json::object(), true, "").status, "True");  // no gates
}

TEST(KubeletProbes, ParsesTheKubeletsDefaultsAndNamedPorts) {
  const json container = {{"name", "app"}, {"ports", {{{"name", "http"}, {"containerPort", 8080}}}}};
  ProbeSpec s = parse_probe(ProbeKind::kReadiness, {{"httpGet", {{"port", "http"}}}}, container);
  EXPECT_EQ(s.handler, ProbeSpec::Handler::kHttpGet);
  EXPECT_EQ(s.port, 8080);
  EXPECT_EQ(s.path, "/");
  EXPECT_EQ(s.period, 10s);
  EXPECT_EQ(s.timeout, 1s);
  EXPECT_EQ(s.failure_threshold, 3);
  ProbeSpec bad = parse_probe(ProbeKind::kLiveness, {{"tcpSocket", {{"port", "grpc"}}}}, container);
  EXPECT_EQ(bad.handler, ProbeSpec::Handler::kInvalid);
  EXPECT_NE(bad.invalid_reason.find("grpc"), std::string::npos);
  EXPECT_FALSE(run_probe(bad, "127.0.0.1", {}).success);
  ProbeSpec live =
      parse_probe(ProbeKind::kLiveness, {{"exec", {{"command", {"true"}}}}, {"successThreshold", 3}}, container);
  EXPECT_EQ(live.success_threshold, 1);  // always 1 for liveness
}

TEST(KubeletProbes, ThresholdsTurnRunsIntoResults) {
  ProbeSpec spec;
  spec.handler = ProbeSpec::Handler::kExec;
  spec.initial_delay = 5s;
  spec.period = 1s;
  spec.success_threshold = 2;
  spec.failure_threshold = 2;
  const auto t0 = ProbeTracker::Clock::now();
  ProbeTracker readiness(ProbeKind::kReadiness, spec, t0);
  EXPECT_EQ(readiness.result(), false);
  EXPECT_FALSE(readiness.due(t0 + 4s));
  EXPECT_TRUE(readiness.due(t0 + 5s));
  EXPECT_FALSE(readiness.record({true, ""}, t0 + 5s));
  EXPECT_FALSE(readiness.due(t0 + 5500ms));
  EXPECT_TRUE(readiness.record({true, ""}, t0 + 6s));
  EXPECT_EQ(readiness.result(), true);
  EXPECT_FALSE(readiness.record({false, "x"}, t0 + 7s));
  EXPECT_TRUE(readiness.record({false, "x"}, t0 + 8s));
  EXPECT_EQ(readiness.result(), false);
  ProbeTracker liveness(ProbeKind::kLiveness, spec, t0);
  EXPECT_EQ(liveness.result(), true);
  ProbeTracker startup(ProbeKind::kStartup, spec, t0);
  EXPECT_FALSE(startup.result().has_value());
}

TEST(KubeletProbes, ExecAndTcpRunForReal) {
  EXPECT_TRUE(exec_probe({"sh", "-c", "exit 0"}, {}, 2s).success);
  const ProbeOutcome failed = exec_probe({"sh", "-c", "exit 2"}, {}, 2s);
  EXPECT_FALSE(failed.success);
  EXPECT_EQ(failed.message, "command exited with 2");
  EXPECT_FALSE(exec_probe({"sleep", "5"}, {}, 200ms).success);
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  EXPECT_FALSE(tcp_socket_probe("127.0.0.1", *port, 500ms).success);
  EXPECT_FALSE(http_get_probe("127.0.0.1", *port, "/", {}, 500ms).success);
}

TEST(KubeletContainerEnv, FollowsKubernetesOrderAndReferences) {
  const json pod = {{"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "u-1"}, {"labels", {{"app", "x"}}}}},
                    {"spec", {{"nodeName", "n1"}}}};
  const json container = {
      {"envFrom", {{{"secretRef", {{"name", "creds"}}}, {"prefix", "S_"}}}},
      {"env",
       {{{"name", "A"}, {"value", "$(POD_IP):$(B)"}},
        {{"name", "B"}, {"value", "late"}},
        {{"name", "APP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.labels['app']"}}}}}},
        {{"name", "TOKEN"}, {"valueFrom", {{"secretKeyRef", {{"name", "creds"}, {"key", "token"}}}}}},
        {{"name", "OPT"},
         {"valueFrom", {{"configMapKeyRef", {{"name", "missing"}, {"key", "k"}, {"optional", true}}}}}}}}};
  ObjectLookup lookup = [](const std::string& resource, const std::string& ns,
                           const std::string& name) -> StatusOr<json> {
    if (resource == "secrets" && ns == "ns" && name == "creds") return json{{"data", {{"token", "c2VjcmV0"}}}};
    return not_found(name);
  };
  auto env = container_environment(pod, container, "127.0.1.10", "127.0.1.1", lookup);
  ASSERT_TRUE(env.ok()) << env.status().to_string();
  EXPECT_EQ(env->at("POD_NAME"), "p");
  EXPECT_EQ(env->at("NODE_NAME"), "n1");
  EXPECT_EQ(env->at("A"), "127.0.1.10:$(B)");  // B is defined after A
  EXPECT_EQ(env->at("APP"), "x");
  EXPECT_EQ(env->at("TOKEN"), "secret");
  EXPECT_EQ(env->at("S_token"), "secret");
  EXPECT_EQ(env->count("OPT"), 0u);
  json needs_missing = container;
  needs_missing["env"].push_back(
      {{"name", "M"}, {"valueFrom", {{"configMapKeyRef", {{"name", "missing"}, {"key", "k"}}}}}});
  auto missing = container_environment(pod, needs_missing, "127.0.1.10", "127.0.1.1", lookup);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("configmap \"missing\" not found"), std::string::npos)
      << missing.status().message();
}

}  // namespace
}  // namespace hotswap::devcluster
