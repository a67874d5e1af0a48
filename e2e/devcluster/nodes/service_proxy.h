// The dev cluster's service proxy, a userspace kube-proxy: for every Service with a ClusterIP
// (127.0.2.N in the dev cluster; all of 127.0.0.0/8 is routed to lo on Linux, so binding needs no
// setup) it listens on <clusterIP>:<port> for each TCP port and forwards each accepted
// connection to one endpoint of the Service's EndpointSlices with the same port name, round
// robin over the ready endpoints (kube-proxy's fallback when none is ready: the serving
// terminating ones). A connection to a Service with no usable endpoint is reset at once, as
// kube-proxy rejects it. The sockets, the byte copying and half-close are TcpRelay's
// (tcp_relay.h); this part keeps the routing table from the API server.
//
// Traffic follows readiness: an EndpointSlice change is applied to the routing table in the
// informer's event handler, so new connections see it as soon as the watch delivers it.
// Connections already open stay on their endpoint until they end (as with conntrack).
//
// Threads: the two informers' threads update the routing table and the wanted listeners under
// a lock; the relay's loop thread reads the table for each new connection. The accessors are
// safe from any thread. stop() (and the destructor) stops the informers, then the relay, which
// closes every listener and connection.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "e2e/devcluster/nodes/tcp_relay.h"
#include "operator/kube/rest_client.h"

namespace hotswap::devcluster {

struct ProxyBackend {
  std::string ip;
  int port = 0;
  std::string pod;  // the endpoint's targetRef name, "" when none
  std::string address() const { return ip + ":" + std::to_string(port); }
  bool operator==(const ProxyBackend&) const = default;
};

struct ProxyPortBackends {
  std::vector<ProxyBackend> ready;                // conditions.ready true (or unset)
  std::vector<ProxyBackend> serving_terminating;  // not ready, but serving and terminating
  // What new connections go to: the ready endpoints, else the serving terminating ones.
  const std::vector<ProxyBackend>& usable() const { return ready.empty() ? serving_terminating : ready; }
};

// The endpoints of one Service, by port name, from its EndpointSlices (IPv4 slices, TCP ports;
// an endpoint present in several slices counts once), each list ordered by address.
std::map<std::string, ProxyPortBackends> proxy_backends(const std::vector<nlohmann::json>& slices);

struct ServiceProxyOptions {
  TcpRelayOptions relay;
};

struct ServiceProxyCounters {
  std::map<std::string, int64_t> forwarded;  // endpoint "ip:port" -> connections established
  int64_t rejected = 0;                      // no usable endpoint (or over capacity): reset at once
  int64_t upstream_failed = 0;               // the endpoint refused or timed out: reset
};

class ServiceProxy {
 public:
  // The client must outlive the proxy.
  explicit ServiceProxy(const kube::RestClient& client, ServiceProxyOptions options = {});
  ~ServiceProxy();
  ServiceProxy(const ServiceProxy&) = delete;
  ServiceProxy& operator=(const ServiceProxy&) = delete;

  Status start();
  void stop();
  bool wait_for_sync(std::chrono::milliseconds timeout) const;

  // For tests and status pages. service_key: "namespace/name".
  ServiceProxyCounters counters(const std::string& service_key) const;
  ProxyPortBackends backends(const std::string& service_key, const std::string& port_name) const;
  // Addresses listened on ("127.0.2.1:80") -> service key.
  std::map<std::string, std::string> listeners() const;
  // Addresses that could not be bound -> why (retried every bind_retry).
  std::map<std::string, std::string> listener_errors() const;
  size_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hotswap::devcluster
