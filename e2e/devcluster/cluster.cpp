#include "e2e/devcluster/cluster.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "e2e/devcluster/nodes/endpointslice_controller.h"
#include "e2e/devcluster/nodes/kubelet.h"
#include "e2e/devcluster/nodes/pod_ip_allocator.h"
#include "e2e/devcluster/nodes/scheduler.h"
#include "e2e/devcluster/nodes/service_proxy.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

std::string speed_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

StatusOr<std::vector<GpuClass>> parse_gpu_classes(const std::string& text) {
  std::vector<GpuClass> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    GpuClass c;
    const size_t colon = item.find(':');
    c.name = item.substr(0, colon);
    bool name_ok = !c.name.empty() && c.name.size() <= 63;
    for (char ch : c.name)
      name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.');
    if (!name_ok)
      return invalid_argument("--gpu-classes: \"" + item + "\": a class name is 1-63 letters, digits, '-', '_' or '.'");
    if (colon != std::string::npos) {
      const std::string factor = item.substr(colon + 1);
      char* end = nullptr;
      c.speed_factor = std::strtod(factor.c_str(), &end);
      if (factor.empty() || *end != '\0' || !(c.speed_factor > 0) || c.speed_factor > 100)
        return invalid_argument("--gpu-classes: \"" + item + "\": the speed factor must be a number in (0, 100]");
    }
    out.push_back(c);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

struct DevCluster::Impl {
  DevClusterOptions options;
  std::unique_ptr<ApiServer> server;
  std::unique_ptr<kube::RestClient> client;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<EndpointSliceController> endpoints;
  std::unique_ptr<ServiceProxy> proxy;
  std::vector<std::unique_ptr<Kubelet>> kubelets;
  bool stopped = false;

  void stop() {
    if (stopped) return;
    stopped = true;
    // Node side first, so Pods end gracefully while the server still answers.
    for (auto& k : kubelets) k->stop();
    if (proxy) proxy->stop();
    if (endpoints) endpoints->stop();
    if (scheduler) scheduler->stop();
    if (server) server->stop();
  }
};

StatusOr<std::unique_ptr<DevCluster>> DevCluster::start(DevClusterOptions options) {
  if (options.nodes < 1) return invalid_argument("a dev cluster needs at least one node");
  if (options.nodes > 200) return invalid_argument("at most 200 nodes (their IPs are 127.0.1.1..200)");
  if (options.gpu_classes.empty()) options.gpu_classes.push_back(GpuClass{});
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  HOTSWAP_ASSIGN_OR_RETURN(impl->server, ApiServer::start(options.api));
  kube::ClusterConfig config;
  config.server = impl->server->url();
  config.token = options.api.token;
  config.origin = "the dev cluster's own API server";
  HOTSWAP_ASSIGN_OR_RETURN(impl->client, kube::RestClient::create(config));
  auto fail = [&](const Status& st, const std::string& what) {
    impl->stop();
    return st.with_context(what);
  };
  auto ips = std::make_shared<PodIpAllocator>();
  // The fastest class runs the CPU backend at full speed; the others slower, in proportion.
  double fastest = 0;
  for (const GpuClass& g : options.gpu_classes) fastest = std::max(fastest, g.speed_factor);
  for (int i = 1; i <= options.nodes; ++i) {
    const GpuClass& gpu = options.gpu_classes[static_cast<size_t>(i - 1) % options.gpu_classes.size()];
    KubeletOptions ko;
    ko.node_name = "node-" + std::to_string(i);
    ko.node_ip = "127.0.1." + std::to_string(i);
    ko.pod_ips = ips;
    ko.log_dir = options.log_dir;
    ko.status_interval = options.kubelet_status_interval;
    ko.labels = {{"nvidia.com/gpu.product", gpu.name},
                 {"nvidia.com/gpu.count", std::to_string(options.gpus_per_node)},
                 {"hotswap.io/gpu-speed-factor", speed_text(gpu.speed_factor)}};
    ko.capacity = {{"nvidia.com/gpu", std::to_string(options.gpus_per_node)}};
    ko.container_env = {{"HOTSWAP_GPU_SPEED_FACTOR", speed_text(gpu.speed_factor)},
                        {"HOTSWAP_GPU_SPEED_REFERENCE", speed_text(fastest)},
                        {"HOTSWAP_NODE_ID", "devcluster/" + ko.node_name}};
    auto kubelet = std::make_unique<Kubelet>(*impl->client, ko);
    if (Status st = kubelet->start(); !st.ok()) return fail(st, "kubelet of " + ko.node_name);
    impl->kubelets.push_back(std::move(kubelet));
  }
  impl->scheduler = std::make_unique<Scheduler>(*impl->client);
  if (Status st = impl->scheduler->start(); !st.ok()) return fail(st, "scheduler");
  impl->endpoints = std::make_unique<EndpointSliceController>(*impl->client);
  if (Status st = impl->endpoints->start(); !st.ok()) return fail(st, "EndpointSlice controller");
  impl->proxy = std::make_unique<ServiceProxy>(*impl->client);
  if (Status st = impl->proxy->start(); !st.ok()) return fail(st, "service proxy");
  // Ready: every node registered with Ready=True.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto nodes = impl->client->list(kube::ResourceRef::core("nodes"));
    int ready = 0;
    if (nodes.ok()) {
      for (const auto& n : nodes.value().value("items", json::array()))
        for (const auto& c : n.value("/status/conditions"_json_pointer, json::array()))
          if (c.value("type", std::string()) == "Ready" && c.value("status", std::string()) == "True") ++ready;
    }
    if (ready >= options.nodes) break;
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(unavailable(std::to_string(ready) + " of " + std::to_string(options.nodes) +
                              " nodes Ready after 30 s"),
                  "dev cluster");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::unique_ptr<DevCluster>(new DevCluster(std::move(impl)));
}

DevCluster::DevCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DevCluster::~DevCluster() { stop(); }
void DevCluster::stop() { impl_->stop(); }
std::string DevCluster::url() const { return impl_->server->url(); }
ApiServer& DevCluster::api_server() { return *impl_->server; }
const kube::RestClient& DevCluster::client() const { return *impl_->client; }

}  // namespace hotswap::devcluster
