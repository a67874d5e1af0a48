// TcpRelay: listens on a set of TCP addresses and relays every accepted connection to a backend
// chosen per connection, copying bytes both ways until each side has closed. An EOF from one side
// becomes shutdown(SHUT_WR) on the other, so half-closed protocols work; a reset or error on one
// side resets the other; a connection with no backend, over capacity or whose backend refuses is
// reset at once. The service proxy (service_proxy.h) is its user: it owns the routing, this owns
// the sockets.
//
// Threads: one event-loop thread owns every socket (epoll, non-blocking, level-triggered); each
// connection costs two buffers of buffer_bytes and no thread. set_listeners() and the accessors
// are safe from any thread; set_listeners() wakes the loop, which binds and closes listeners at
// once (a bind that fails is retried every bind_retry). The hooks run on the loop thread and
// must not block. Closing a listener leaves its open connections alone, as conntrack keeps flows.
// stop() (and the destructor) closes everything and joins.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::devcluster {

struct RelayEndpoint {
  std::string ip;  // IPv4
  int port = 0;
  std::string address() const { return ip + ":" + std::to_string(port); }
};

struct RelayListener {
  RelayEndpoint address;
  std::string route;  // handed to hooks.choose for each connection accepted here
};

struct TcpRelayOptions {
  size_t max_connections = 4096;                    // open relayed connections; past this new ones are reset
  size_t buffer_bytes = 64 * 1024;                  // per direction of each connection
  std::chrono::milliseconds connect_timeout{5000};  // to the backend; then the client is reset
  std::chrono::milliseconds bind_retry{1000};       // a listener that failed to bind is retried
  int listen_backlog = 1024;
};

struct TcpRelayHooks {
  // Where a connection accepted on a listener of `route` goes; nullopt resets it.
  std::function<std::optional<RelayEndpoint>(const std::string& route)> choose;
  // The backend ("ip:port") accepted the connection: bytes flow.
  std::function<void(const std::string& route, const std::string& backend)> on_connected;
  // The backend refused or did not answer within connect_timeout: the client was reset.
  std::function<void(const std::string& route, const std::string& backend)> on_connect_failed;
  // The client was reset without trying a backend: choose gave none, or over max_connections.
  std::function<void(const std::string& route)> on_refused;
};

class TcpRelay {
 public:
  TcpRelay(TcpRelayOptions options, TcpRelayHooks hooks);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  Status start();
  void stop();

  // The listeners wanted from now on (replacing the previous set; an address listed twice keeps
  // its last route).
  void set_listeners(const std::vector<RelayListener>& listeners);

  std::map<std::string, std::string> listeners() const;        // bound address -> route
  std::map<std::string, std::string> listener_errors() const;  // unbound address -> why
  size_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hotswap::devcluster
