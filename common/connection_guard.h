// A front for an HTTP/1.1 server that has no limits of its own (cpprestsdk's listener keeps
// any number of connections, reads heads of any size and waits forever on a slow client). The
// guard accepts the public connections and relays their bytes, unchanged, to the server on a
// loopback port, following each direction's framing (http_framing.h) to enforce what the
// server does not:
//   - at most max_connections at once; the next is answered 503 (Retry-After) and closed;
//   - a request head of at most max_header_bytes (431), sent within header_timeout of its
//     first byte, or of the connection's start for the first (408);
//   - a request body whose next byte comes within body_timeout (408);
//   - a client that leaves response bytes unread for send_timeout is hung up on;
//   - a kept-alive connection with no request in flight is closed after idle_timeout.
// Its own replies come only where no response is under way on the connection (else it just
// closes), with Connection: close, and it lingers briefly reading what the client still sends
// so the reply is not lost to a reset. A response the server is still working on (a long
// generation with nothing to send yet) has no timeout here.
//
// Threads: one, the guard's own, owns every connection; start() and stop() are called from
// any one thread. The hooks run on the guard's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace hotswap::http {

struct ConnectionLimits {
  int max_connections = 1024;
  size_t max_header_bytes = 32 << 10;
  std::chrono::milliseconds header_timeout{30'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds send_timeout{60'000};
  std::chrono::milliseconds idle_timeout{120'000};
};

// Why the guard refused or ended a connection.
enum class GuardEvent {
  kTooManyConnections,
  kHeaderTooLarge,
  kHeaderTimeout,
  kBodyTimeout,
  kBadFraming,
  kSendTimeout,
  kIdle,
  kUpstreamUnreachable,
};
const char* guard_event_name(GuardEvent e);  // "too_many_connections", ...

struct GuardHooks {
  // The JSON body of the guard's own replies (503, 431, 408, 400, 502) in the server's shape.
  std::function<std::string(int http_status, const std::string& message)> error_body;
  std::function<void(GuardEvent)> on_event;            // optional
  std::function<void(int open)> on_open_connections;  // optional; after every change
};

class ConnectionGuard {
 public:
  // Listens on host:port (port 0: a free one) and relays each connection to 127.0.0.1:
  // upstream_port. kUnavailable when the address cannot be listened on.
  static StatusOr<std::unique_ptr<ConnectionGuard>> start(const std::string& host, int port, int upstream_port,
                                                          ConnectionLimits limits, GuardHooks hooks);
  ~ConnectionGuard();  // stop()

  int port() const;
  // Closes the listening socket and every connection, and joins the guard's thread.
  void stop();

  class Impl;

 private:
  explicit ConnectionGuard(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hotswap::http
