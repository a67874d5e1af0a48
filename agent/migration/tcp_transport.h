// The tcp transport: the chunk stream protocol (transport.h) over one TCP connection, the
// default between agents on different nodes. The target listens, the source connects; chunks go
// source → target and the control messages come back on the same connection.
//
// Sockets are IPv4, non-blocking, with Nagle off and large kernel buffers (tcp_socket.h); all
// waits are poll() with deadlines. Given a TlsContext, both ends run TLS over the connection
// (tls_link.h) before the first chunk, within the same timeout. Host names go through the system resolver (getaddrinfo),
// whose own timeouts apply; agents pass pod IPs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/migration/tcp_socket.h"
#include "agent/migration/tls_link.h"
#include "agent/migration/transport.h"

namespace hotswap::migration {

// The target's listening socket. Threads: one owner.
class TcpListener {
 public:
  // Binds host:port (port 0: the kernel picks a free one; port() says which).
  static StatusOr<TcpListener> listen(const std::string& host, uint16_t port);

  uint16_t port() const { return port_; }
  // The listening socket, readable when a source is waiting (to poll it beside other listeners).
  int fd() const { return fd_.get(); }
  // The next source that connects, as a receiver; kUnavailable when none came within timeout,
  // or when the TLS handshake with the one that came failed (`tls` non-null; the message says why).
  StatusOr<std::unique_ptr<ChunkReceiver>> accept(std::chrono::milliseconds timeout, ReceiverOptions options = {},
                                                  const TlsContext* tls = nullptr);

 private:
  TcpListener(UniqueFd fd, uint16_t port) : fd_(std::move(fd)), port_(port) {}

  UniqueFd fd_;
  uint16_t port_ = 0;
};

// Connects to a target's listener, as a sender (over TLS when `tls` is non-null).
StatusOr<std::unique_ptr<ChunkSender>> tcp_connect(const std::string& host, uint16_t port, SenderOptions options,
                                                   std::chrono::milliseconds timeout, const TlsContext* tls = nullptr);

// The ByteLink over a connected socket (for tests of the protocol over TCP).
StatusOr<std::unique_ptr<ByteLink>> make_tcp_link(UniqueFd socket, std::string peer);

}  // namespace hotswap::migration
