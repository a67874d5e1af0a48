// Test helpers for the node-side controllers that route traffic (EndpointSlice controller,
// service proxy): an in-process API server reached through operator/kube's RestClient, as the
// components reach any API server, and builders for the Services and Pods they watch. There is no
// kubelet in these tests: a Pod's podIP, phase and Ready condition are set through the
// pods/<name>/status subresource with a merge patch, as the kubelet would.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "e2e/devcluster/apiserver/api_server.h"
#include "operator/kube/rest_client.h"

namespace hotswap::devcluster::testing {

using json = nlohmann::json;

inline const kube::ResourceRef kServicesRef = kube::ResourceRef::core("services").in("default");
inline const kube::ResourceRef kPodsRef = kube::ResourceRef::core("pods").in("default");
inline const kube::ResourceRef kEndpointsRef = kube::ResourceRef::core("endpoints").in("default");
inline const kube::ResourceRef kSlicesRef =
    kube::ResourceRef::of("discovery.k8s.io", "v1", "endpointslices").in("default");

// An API server on loopback and a RestClient for it.
class KubeTestCluster {
 public:
  Status start() {
    ApiServerOptions o;
    o.bookmark_interval = std::chrono::milliseconds(500);
    auto s = ApiServer::start(o);
    if (!s.ok()) return s.status();
    server_ = std::move(*s);
    kube::ClusterConfig config;
    config.server = server_->url();
    kube::RestClientOptions ro;
    ro.timeout = std::chrono::milliseconds(10000);
    auto c = kube::RestClient::create(config, ro);
    if (!c.ok()) return c.status();
    client_ = std::move(*c);
    return Status();
  }
  void stop() {
    if (server_) server_->stop();
  }
  const kube::RestClient& client() const { return *client_; }
  ApiServer& server() { return *server_; }

 private:
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<kube::RestClient> client_;
};

// ports: Service ports, e.g. {{"name","http"},{"port",80},{"targetPort","http"}}.
inline json service_object(const std::string& name, const json& selector, const json& ports,
                           const std::string& cluster_ip = "") {
  json s = {{"apiVersion", "v1"},
            {"kind", "Service"},
            {"metadata", {{"name", name}, {"labels", {{"team", "serving"}}}}},
            {"spec", {{"ports", ports}}}};
  if (!selector.is_null()) s["spec"]["selector"] = selector;
  if (!cluster_ip.empty()) s["spec"]["clusterIP"] = cluster_ip;
  return s;
}

// container_ports: e.g. {{{"name","http"},{"containerPort",8080}}}.
inline json pod_object(const std::string& name, const json& labels, const json& container_ports = json::array(),
                       const std::string& node = "") {
  json container = {{"name", "app"}, {"image", "local/agent"}};
  if (!container_ports.empty()) container["ports"] = container_ports;
  json p = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"labels", labels}}},
            {"spec", {{"containers", json::array({container})}}}};
  if (!node.empty()) p["spec"]["nodeName"] = node;
  return p;
}

// What the kubelet would report: the Pod's IP, its phase and its Ready condition.
inline kube::ApiResult set_pod_status(const kube::RestClient& client, const std::string& name, const std::string& ip,
                                      bool ready, const std::string& phase = "Running") {
  json status = {{"phase", phase},
                 {"podIP", ip},
                 {"podIPs", json::array({{{"ip", ip}}})},
                 {"conditions", json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}})}};
  return client.patch(kPodsRef.named(name).sub("status"), kube::PatchType::kMerge, {{"status", status}});
}

// Polls pred every `step` until it holds or `timeout` passed.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                std::chrono::milliseconds step = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace hotswap::devcluster::testing
