// The control API's migrations (DESIGN.md, "A migration, phase by phase"):
//   POST /control/v1/migrations               {id, source, model_digest, protocol_version} —
//        prepare this agent as the target: check the digest and the migration protocol (the
//        snapshot format version) where given (409 naming the one that differs), listen for the snapshot stream on tcp and on a shm socket
//        (in a private directory, removed once the source connected) -> {"data_endpoint": tcp,
//        "data_endpoints": {"tcp", "shm"}, "node_id"}; the source connects to one of them. The
//        "tcp" endpoint is tls://host:port when the agent has TLS material (MigrationHost::tls).
//   POST /control/v1/migrations/{id}/start    {data_endpoint (tls://, tcp://host:port or shm:///path),
//        target_url, mode, downtime_budget_ms, bandwidth_cap_bytes_per_s, max_rounds, sequences}
//        — run this agent as the source
//   GET  /control/v1/migrations/{id}          phase, report (rounds, bytes, rate, downtime)
//   POST /control/v1/migrations/{id}/abort
// The source, after the switch, relays the target's tokens into the client connections it
// holds (stream_relay.h). The target gives every imported request a stream that outlives its
// consumer, so a client can reconnect to it with Last-Event-ID.
//
// Threads: each migration runs on a worker thread of its own; the handlers only start, read and
// abort them, under mu_.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "agent/migration/migration_session.h"
#include "agent/migration/transport.h"
#include "agent/server/engine_service.h"
#include "agent/server/response_sink.h"
#include "agent/server/stream_relay.h"

namespace hotswap::migration {
class ShmListener;
class ShmSocketDir;
class TcpListener;
class TlsContext;
}  // namespace hotswap::migration

namespace hotswap::agent {

struct MigrationHost {
  EngineService* service = nullptr;
  ServerMetrics* metrics = nullptr;  // migrations by result, bytes, rounds, downtime (may be null)
  std::function<std::shared_ptr<SseStream>(const std::string& request_id, int64_t next_event_id)> new_stream;
  // Called on the source once the target owns the sequences (Draining), with the target's URL:
  // the server then forwards new requests there.
  std::function<void(const std::string& target_url)> on_switched;
  std::weak_ptr<SinkHost> sink_host;
  std::string listen_host = "127.0.0.1";  // where target data listeners bind
  // The ports they bind, first..last (a NetworkPolicy names them); 0, 0: any free port.
  uint16_t data_port_first = 0, data_port_last = 0;
  // The data channel's TLS (tls_link.h): with it, a target listens on tls:// only and a source
  // connects to tls:// endpoints. A tcp:// endpoint (plaintext) is refused on both sides unless
  // allow_plaintext; shm (same node, a private Unix socket) needs neither.
  std::shared_ptr<const migration::TlsContext> tls;
  bool allow_plaintext = false;
  std::string self_name;                  // for manifests and logs
  std::string model_digest;
  std::string architecture;
  kernels::DType weight_dtype = kernels::DType::kBF16;
};

class MigrationController {
 public:
  explicit MigrationController(MigrationHost host);
  ~MigrationController();  // shutdown()
  // Aborts every migration and joins their threads; later calls find them ended.
  void shutdown();

  StatusOr<nlohmann::json> prepare(const nlohmann::json& body);
  // What a client compares before it prepares a target for this agent as the source, in
  // GET /control/v1/status: {"model_digest", "migration_protocol"}.
  nlohmann::json identity() const;
  StatusOr<nlohmann::json> start(const std::string& id, const nlohmann::json& body);
  StatusOr<nlohmann::json> get(const std::string& id) const;
  Status abort(const std::string& id);

 private:
  struct Migration {
    std::string id, role, phase = "Pending";
    nlohmann::json report = nlohmann::json::object();
    std::string error;
    std::string transport;                               // "tcp", "tls" or "shm", once connected
    bool cancelled = false;                              // by abort(), shutdown(): a target stops waiting
    std::unique_ptr<migration::ChunkSender> sender;      // source
    std::unique_ptr<migration::ChunkReceiver> receiver;  // target
    std::vector<std::shared_ptr<StreamRelay>> relays;
    // Source, Draining: relays not yet ended; at 0 the migration reads as Completed (the source
    // holds no client of it any more). Shared with the relays' callbacks, which may outlive it.
    std::shared_ptr<std::atomic<int64_t>> relays_open = std::make_shared<std::atomic<int64_t>>(0);
    std::thread worker;
  };
  // shm_dir holds shm's socket; both go as soon as the source connected or the wait ended.
  void run_target(Migration* m, std::unique_ptr<migration::TcpListener> tcp,
                  std::unique_ptr<migration::ShmListener> shm, std::unique_ptr<migration::ShmSocketDir> shm_dir,
                  std::string digest);
  void run_source(Migration* m, nlohmann::json body);
  migration::EngineCall engine_call() const;
  // Counts an ended migration in the metrics (under mu_: reads m's transport ends).
  void observe_locked(const Migration& m, const std::string& result, int64_t rounds, double switch_ms);

  MigrationHost host_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Migration>> migrations_;
};

}  // namespace hotswap::agent
