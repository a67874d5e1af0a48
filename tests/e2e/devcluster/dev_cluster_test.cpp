// The whole dev cluster in one process: a Pod is scheduled, run by its node's kubelet on its own
// loopback IP, and reached through its Service's ClusterIP only while it is Ready, which its
// readiness gate decides; and `hotswap-devcluster up`/`down` start and stop all of it.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "e2e/devcluster/cluster.h"
#include "e2e/devcluster/nodes/local_process.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// GET / over a fresh connection to ip:port; the body's first line, or "" when refused.
std::string http_get(const std::string& ip, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
    (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const auto body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4, out.find('\n', body + 4) - body - 4);
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

class DevClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("devcluster-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    cluster_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<DevCluster> cluster_;
};

TEST_F(DevClusterTest, TrafficThroughTheClusterIpFollowsTheReadinessGate) {
  DevClusterOptions o;
  o.nodes = 2;
  o.log_dir = (dir_ / "logs").string();
  o.gpu_classes = {{"t4-sim", 1.0}, {"a100-sim", 2.0}};
  auto c = DevCluster::start(o);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  cluster_ = std::move(*c);
  const kube::RestClient& k = cluster_->client();
  auto n2 = k.get(kube::ResourceRef::core("nodes").named("node-2"));
  ASSERT_TRUE(n2.ok());
  EXPECT_EQ(n2.value()["metadata"]["labels"]["nvidia.com/gpu.product"], "a100-sim");
  EXPECT_EQ(n2.value()["metadata"]["labels"]["hotswap.io/gpu-speed-factor"], "2");
  EXPECT_EQ(n2.value()["status"]["capacity"]["nvidia.com/gpu"], "1");

  // A replica as the operator makes one: a GPU, and the serving gate, False until steered.
  // (python3's http.server serves the folder it runs in: a fresh one holding index.html.)
  const json p = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", "replica-0"}, {"labels", {{"app", "web"}}}}},
      {"spec",
       {{"readinessGates", {{{"conditionType", "hotswap.io/serving"}}}},
        {"containers",
         {{{"name", "http"},
           {"image", "python"},
           {"command",
            {"sh", "-c",
             "echo speed=$HOTSWAP_GPU_SPEED_FACTOR ref=$HOTSWAP_GPU_SPEED_REFERENCE; cd \"$(mktemp -d)\" && echo replica-0 > index.html && "
             "exec python3 -m http.server --bind \"$POD_IP\" 8080"}},
           {"resources", {{"limits", {{"nvidia.com/gpu", 1}}}}},
           {"readinessProbe", {{"httpGet", {{"path", "/"}, {"port", 8080}}}, {"periodSeconds", 1}}}}}}}}};
  const auto pods = kube::ResourceRef::core("pods").in("default");
  ASSERT_TRUE(k.create(pods, p).ok());
  const json svc = {{"apiVersion", "v1"},
                    {"kind", "Service"},
                    {"metadata", {{"name", "web"}}},
                    {"spec", {{"selector", {{"app", "web"}}}, {"ports", {{{"port", 80}, {"targetPort", 8080}}}}}}};
  auto created = k.create(kube::ResourceRef::core("services").in("default"), svc);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  const std::string cluster_ip = created.value()["spec"]["clusterIP"];

  // Running and its containers ready, but not Ready: the gate is not True.
  json running;
  ASSERT_TRUE(eventually([&] {
    auto r = k.get(pods.named("replica-0"));
    if (!r.ok()) return false;
    running = r.value();
    for (const auto& cs : running.value("/status/containerStatuses"_json_pointer, json::array()))
      if (cs.value("ready", false)) return true;
    return false;
  }, 20s))
      << running.dump();
  const std::string pod_ip = running["status"]["podIP"];
  EXPECT_EQ(pod_ip.rfind("127.0.1.", 0), 0u);
  EXPECT_FALSE(running["spec"]["nodeName"].get<std::string>().empty());
  EXPECT_EQ(http_get(pod_ip, 8080), "replica-0");  // the Pod itself serves
  // The node's GPU class speed reaches the container's environment.
  const std::string node = running["spec"]["nodeName"];
  auto node_obj = k.get(kube::ResourceRef::core("nodes").named(node));
  ASSERT_TRUE(node_obj.ok());
  std::stringstream log;
  log << std::ifstream(o.log_dir + "/default_replica-0_http.log").rdbuf();
  // The reference is the fastest class's factor: an agent there runs its CPU backend at full speed.
  EXPECT_NE(log.str().find("speed=" + node_obj.value()["metadata"]["labels"]["hotswap.io/gpu-speed-factor"].get<std::string>() +
                           " ref=2\n"),
            std::string::npos)
      << log.str();
  auto condition = [&](const json& o, const std::string& type) {
    for (const auto& c : o.value("/status/conditions"_json_pointer, json::array()))
      if (c["type"] == type) return c.value("status", std::string());
    return std::string();
  };
  EXPECT_EQ(condition(running, "ContainersReady"), "True");
  EXPECT_EQ(condition(running, "Ready"), "False");
  EXPECT_EQ(http_get(cluster_ip, 80), "");  // no ready endpoint: refused

  // The operator's switch: gate True. Ready follows, then the slice, then the proxy.
  auto set_gate = [&](const char* status) {
    auto cur = k.get(pods.named("replica-0"));
    ASSERT_TRUE(cur.ok());
    json conds = json::array();
    for (const auto& c : cur.value().value("/status/conditions"_json_pointer, json::array()))
      if (c["type"] != "hotswap.io/serving") conds.push_back(c);
    conds.push_back({{"type", "hotswap.io/serving"}, {"status", status}});
    ASSERT_TRUE(k.patch(pods.named("replica-0").sub("status"), kube::PatchType::kMerge,
                        {{"status", {{"conditions", conds}}}})
                    .ok());
  };
  set_gate("True");
  EXPECT_TRUE(eventually([&] { return http_get(cluster_ip, 80) == "replica-0"; }));
  kube::ListOptions by_service;
  by_service.label_selector = "kubernetes.io/service-name=web";
  auto slices = k.list(kube::ResourceRef::of("discovery.k8s.io", "v1", "endpointslices").in("default"), by_service);
  ASSERT_TRUE(slices.ok());
  ASSERT_EQ(slices.value()["items"].size(), 1u);
  EXPECT_EQ(slices.value()["items"][0]["endpoints"][0]["addresses"][0], pod_ip);
  EXPECT_EQ(slices.value()["items"][0]["endpoints"][0]["conditions"]["ready"], true);

  // Gate False: traffic stops reaching it, the Pod itself still serving.
  set_gate("False");
  EXPECT_TRUE(eventually([&] { return http_get(cluster_ip, 80).empty(); }));
  EXPECT_EQ(http_get(pod_ip, 8080), "replica-0");

  // Deleting the Pod: SIGTERM, and the kubelet's final delete removes it.
  ASSERT_TRUE(k.remove(pods.named("replica-0")).ok());
  EXPECT_TRUE(eventually([&] { return k.get(pods.named("replica-0")).http_code() == 404; }, 20s));
  EXPECT_EQ(http_get(pod_ip, 8080), "");
}

std::string devcluster_binary() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = '\0';
  // build/tests/hotswap_devcluster_tests -> build/e2e/devcluster/hotswap-devcluster
  return (std::filesystem::path(self).parent_path().parent_path() / "e2e" / "devcluster" / "hotswap-devcluster")
      .string();
}

int run_and_wait(const std::vector<std::string>& argv, const std::string& log, std::chrono::milliseconds limit) {
  auto p = LocalProcess::start(argv, {}, log);
  if (!p.ok()) return -1;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto e = p->poll()) return e->exit_code;
    std::this_thread::sleep_for(20ms);
  }
  p->stop(0ms);
  return -2;
}

TEST_F(DevClusterTest, UpReturnsWhenTheClusterIsReadyAndDownStopsIt) {
  const std::string bin = devcluster_binary();
  ASSERT_TRUE(std::filesystem::exists(bin)) << bin;
  const std::string dir = (dir_ / "state").string();
  const std::string out = (dir_ / "up.out").string();
  ASSERT_EQ(run_and_wait({bin, "up", "--nodes", "2", "--dir", dir}, out, 60s), 0) << std::ifstream(out).rdbuf();
  std::string kubeconfig;
  std::getline(std::ifstream(out) >> std::ws, kubeconfig);
  ASSERT_TRUE(std::filesystem::path(kubeconfig).is_absolute()) << kubeconfig;
  auto config = kube::load_kubeconfig(kubeconfig);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  auto client = kube::RestClient::create(*config);
  ASSERT_TRUE(client.ok());
  auto nodes = (*client)->list(kube::ResourceRef::core("nodes"));
  ASSERT_TRUE(nodes.ok()) << nodes.status().to_string();
  EXPECT_EQ(nodes.value()["items"].size(), 2u);
  // A second up refuses while this one runs.
  EXPECT_EQ(run_and_wait({bin, "up", "--dir", dir}, (dir_ / "up2.out").string(), 30s), 1);
  std::ifstream pid_in(dir + "/devcluster.pid");
  pid_t pid = 0;
  pid_in >> pid;
  ASSERT_GT(pid, 0);
  ASSERT_EQ(run_and_wait({bin, "down", "--dir", dir}, (dir_ / "down.out").string(), 60s), 0);
  EXPECT_NE(::kill(pid, 0), 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/devcluster.pid"));
  EXPECT_FALSE((*client)->list(kube::ResourceRef::core("nodes")).ok());
  // Bad flags fail before anything starts.
  EXPECT_EQ(run_and_wait({bin, "up", "--nodes", "0", "--dir", dir}, (dir_ / "bad.out").string(), 10s), 1);
  EXPECT_EQ(run_and_wait({bin, "up", "--gpu-classes", "t4:fast", "--dir", dir}, (dir_ / "bad2.out").string(), 10s), 1);
}

TEST(GpuClasses, ParseNamesAndSpeedFactorsAndNameTheBadItem) {
  auto c = parse_gpu_classes("t4-sim,a100-sim:2.5");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].name, "t4-sim");
  EXPECT_EQ((*c)[0].speed_factor, 1.0);
  EXPECT_EQ((*c)[1].speed_factor, 2.5);
  auto bad = parse_gpu_classes("t4,a100:0");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "--gpu-classes: \"a100:0\": the speed factor must be a number in (0, 100]");
  EXPECT_FALSE(parse_gpu_classes("ok,,x").ok());
}

}  // namespace
}  // namespace hotswap::devcluster
