// DevCluster: the whole embedded cluster in one process — the API server, and on top of it,
// as clients through operator/kube exactly as they would be of a real API server, the
// scheduler, one kubelet per simulated node, the EndpointSlice controller and the service
// proxy. `hotswap-devcluster run` (and so `up`) is one of these; end-to-end tests start one
// in-process.
//
// Nodes are named node-1..node-N on 127.0.1.1..N (Pods get 127.0.1.10 and up), labelled like
// GPU nodes: nvidia.com/gpu.product=<class>, nvidia.com/gpu.count, capacity nvidia.com/gpu, and
// hotswap.io/gpu-speed-factor, which the kubelet hands to every container as
// HOTSWAP_GPU_SPEED_FACTOR, with the fastest class's factor as HOTSWAP_GPU_SPEED_REFERENCE: an
// agent on the CPU backend runs at factor/reference of its speed, so the fastest card runs at
// full speed and the others slower in proportion. HOTSWAP_NODE_ID (the node's name) tells agents
// on different simulated nodes that they are not on one machine: they migrate over the network.
//
// Threads: start() and stop() from one owner thread; each component has its own.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "e2e/devcluster/apiserver/api_server.h"
#include "operator/kube/rest_client.h"

namespace hotswap::devcluster {

struct GpuClass {
  std::string name = "sim";  // nvidia.com/gpu.product
  double speed_factor = 1.0;  // > 1: faster than the reference card
};

// "t4-sim,a100-sim:2.5": a list of name[:speed_factor]; errors name the bad item.
StatusOr<std::vector<GpuClass>> parse_gpu_classes(const std::string& text);

struct DevClusterOptions {
  ApiServerOptions api;
  int nodes = 1;
  int gpus_per_node = 1;
  // Node i gets class i mod size (default: one class "sim" at speed 1).
  std::vector<GpuClass> gpu_classes;
  std::string log_dir = ".devcluster/logs";  // container logs
  std::chrono::milliseconds kubelet_status_interval{1000};
};

class DevCluster {
 public:
  // Returns once every node is registered and Ready (or an error naming what did not start).
  static StatusOr<std::unique_ptr<DevCluster>> start(DevClusterOptions options);
  ~DevCluster();
  DevCluster(const DevCluster&) = delete;
  DevCluster& operator=(const DevCluster&) = delete;

  // Stops the node side first (kubelets terminate their Pods gracefully), then the server.
  void stop();

  std::string url() const;
  ApiServer& api_server();
  const kube::RestClient& client() const;

 private:
  struct Impl;
  explicit DevCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hotswap::devcluster
