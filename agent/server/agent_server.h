// hotswap-agent serve: the OpenAI-compatible API, health and readiness, /metrics, and the
// operator's control API, on cpprestsdk's HTTP listener, in front of an EngineService. The
// listener is on a loopback port of its own; the public address is a ConnectionGuard's, which
// relays to it and bounds connections, head sizes and slow clients (common/connection_guard.h).
//
// Streams (sse_stream.h): events are numbered 0, 1, 2, ... within a stream and the recent ones
// are kept, so GET /v1/streams/{id} with Last-Event-ID resumes a stream exactly. A client that
// goes away makes the next write fail, which cancels its sequence; quiet streams get a comment
// line every heartbeat so that is noticed even before they run.
//
// Threads: cpprestsdk's pool runs the handlers; the engine thread runs the sinks; a heartbeat
// thread pings queued streams; the guard's thread relays the bytes. Each stream's writes are serialised by its own mutex.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agent/engine/engine.h"
#include "common/connection_guard.h"
#include "common/status.h"

namespace hotswap::migration {
class TlsContext;
}

namespace hotswap::agent {

struct AgentServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model_name;     // the id clients name in "model"; default: the model directory's name
  std::string control_token;  // empty: the control API refuses every call
  int max_queue = 256;
  double speed_factor = 1.0;  // the card's speed against the reference (reported in /healthz, metrics)
  std::chrono::milliseconds heartbeat{1000};
  size_t resume_log_events = 1024;      // recent events per stream kept for Last-Event-ID
  std::chrono::seconds resume_ttl{60};  // how long a finished stream can still be resumed
  // The migration data channel (migration_controller.h): TLS material, else plaintext only when
  // allowed; without either the agent takes and sends no migration over the network.
  std::shared_ptr<const migration::TlsContext> migration_tls;
  bool allow_plaintext_migration = false;
  // The ports a migration target's data listener binds, first..last; 0, 0: any free port.
  uint16_t migration_port_first = 0, migration_port_last = 0;
  // Connections, head sizes and slow clients (common/connection_guard.h).
  http::ConnectionLimits connection_limits;
};

class AgentServer {
 public:
  static StatusOr<std::unique_ptr<AgentServer>> start(std::shared_ptr<const engine::Model> model,
                                                      std::unique_ptr<engine::Engine> engine,
                                                      const AgentServerOptions& options);
  ~AgentServer();

  std::string url() const;  // http://host:port
  // Stop taking requests (503; /readyz fails); running streams go on.
  void drain();
  // Waits until no request is open, at most `timeout`; true when idle.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Closes the listener and ends the engine; open requests fail.
  void stop();
  // The engine's counters (taken on the engine thread).
  StatusOr<engine::EngineStats> engine_stats();

  class Impl;

 private:
  explicit AgentServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace hotswap::agent
