#include "agent/server/migration_controller.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/migration/migration_session.h"
#include "agent/migration/shm_transport.h"
#include "agent/migration/snapshot.h"
#include "agent/migration/tcp_transport.h"
#include "common/log.h"

namespace hotswap::agent {

using nlohmann::json;

namespace {

constexpr std::chrono::milliseconds kTransferTimeout{30000};

constexpr const char* kNoTlsMaterial =
    "this agent has no migration TLS material (--migration-tls-dir, or $HOTSWAP_MIGRATION_TLS_CA, _CERT, _KEY)";
constexpr const char* kAllowPlaintextFlag = "--allow-plaintext-migration";

// How often a target waiting for its source looks whether the migration was aborted.
constexpr std::chrono::milliseconds kAcceptSlice{100};

struct DataEndpoint {
  std::string transport;  // "tcp", "tls" or "shm"
  std::string host;       // tcp, tls
  uint16_t port = 0;      // tcp, tls
  std::string path;       // shm: the target's socket
};

StatusOr<DataEndpoint> parse_data_endpoint(const std::string& ep) {
  DataEndpoint d;
  if (ep.rfind("shm://", 0) == 0) {
    HOTSWAP_ASSIGN_OR_RETURN(d.path, migration::parse_shm_endpoint(ep));
    d.transport = "shm";
    return d;
  }
  for (const char* scheme : {"tcp", "tls"}) {
    const std::string prefix = std::string(scheme) + "://";
    if (ep.rfind(prefix, 0) != 0) continue;
    std::string rest = ep.substr(prefix.size());
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return invalid_argument("data_endpoint '" + ep + "' has no port");
    int port = std::atoi(rest.substr(colon + 1).c_str());
    if (port < 1 || port > 65535) return invalid_argument("data_endpoint '" + ep + "' has a bad port");
    d.transport = scheme;
    d.host = rest.substr(0, colon);
    d.port = static_cast<uint16_t>(port);
    return d;
  }
  return invalid_argument("data_endpoint '" + ep + "' is none of tls://host:port, tcp://host:port, shm:///path");
}

// A shm listener in a private directory of its own (one per migration, so a target listens
// for as short as it can and an agent that is killed mid-prepare leaves one empty directory).
Status listen_shm(std::unique_ptr<migration::ShmSocketDir>* dir, std::unique_ptr<migration::ShmListener>* listener) {
  HOTSWAP_ASSIGN_OR_RETURN(auto d, migration::ShmSocketDir::create("hotswap-agent-" + std::to_string(::getpid())));
  HOTSWAP_ASSIGN_OR_RETURN(auto l, migration::ShmListener::listen(d.socket_path("data.sock")));
  *dir = std::make_unique<migration::ShmSocketDir>(std::move(d));
  *listener = std::make_unique<migration::ShmListener>(std::move(l));
  return Status::ok_status();
}

// The target's tcp listener: on any free port, or on the first free one of first..last.
StatusOr<migration::TcpListener> listen_tcp(const std::string& host, uint16_t first, uint16_t last) {
  if (first == 0) return migration::TcpListener::listen(host, 0);
  Status last_error;
  for (uint32_t p = first; p <= last; ++p) {
    auto l = migration::TcpListener::listen(host, static_cast<uint16_t>(p));
    if (l.ok()) return l;
    last_error = l.status();
  }
  return resource_exhausted("no free migration data port in " + std::to_string(first) + ".." + std::to_string(last) +
                            " on " + host + " (--migration-ports; one per migration in flight to this agent): " +
                            last_error.message());
}

}  // namespace

MigrationController::MigrationController(MigrationHost host) : host_(std::move(host)) {}

MigrationController::~MigrationController() {
  shutdown();
}

void MigrationController::shutdown() {
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [id, m] : migrations_) {
      m->cancelled = true;
      if (m->sender) m->sender->abort(unavailable("the agent is shutting down"));
      if (m->receiver) m->receiver->abort(unavailable("the agent is shutting down"));
      for (auto& r : m->relays) r->cancel();
      if (m->worker.joinable()) workers.push_back(std::move(m->worker));
    }
  }
  for (auto& w : workers) w.join();
}

json MigrationController::identity() const {
  return json{{"model_digest", host_.model_digest}, {"migration_protocol", migration::kSnapshotFormatVersion}};
}

migration::EngineCall MigrationController::engine_call() const {
  EngineService* svc = host_.service;
  return [svc](const std::function<Status(engine::Engine&)>& fn) { return svc->run_on_engine(fn); };
}

StatusOr<json> MigrationController::prepare(const json& body) {
  if (!body.is_object() || !body.contains("id") || !body["id"].is_string() || body["id"].get<std::string>().empty())
    return invalid_argument("'id' (a non-empty string) is required");
  const std::string id = body["id"].get<std::string>();
  if (body.contains("model_digest") && !body["model_digest"].is_string())
    return invalid_argument("'model_digest' must be a string (the source's, from its GET /control/v1/status)");
  const std::string digest = body.value("model_digest", std::string());
  if (!digest.empty() && digest != host_.model_digest)
    return failed_precondition("model digest " + digest + " is not this agent's " + host_.model_digest +
                               ": the target must run the source's weights");
  if (body.contains("protocol_version")) {
    if (!body["protocol_version"].is_number_unsigned())
      return invalid_argument("'protocol_version' must be an integer >= 0 (the source's migration_protocol)");
    const uint64_t version = body["protocol_version"].get<uint64_t>();
    if (version != migration::kSnapshotFormatVersion)
      return failed_precondition("migration protocol version " + std::to_string(version) + " is not this agent's " +
                                 std::to_string(migration::kSnapshotFormatVersion) +
                                 " (the snapshot format): the source and the target run hotswap builds that cannot "
                                 "migrate to each other; pick a target of the source's version");
  }
  if (!host_.tls && !host_.allow_plaintext)
    return failed_precondition(kNoTlsMaterial + std::string(" and plaintext migration is not allowed (") +
                               kAllowPlaintextFlag + "): this agent takes no migration over the network");
  HOTSWAP_ASSIGN_OR_RETURN(auto listener, listen_tcp(host_.listen_host, host_.data_port_first, host_.data_port_last));
  auto tcp = std::make_unique<migration::TcpListener>(std::move(listener));
  const std::string tcp_endpoint =
      (host_.tls ? "tls://" : "tcp://") + host_.listen_host + ":" + std::to_string(tcp->port());
  json endpoints = {{"tcp", tcp_endpoint}};
  std::lock_guard<std::mutex> lk(mu_);
  if (migrations_.count(id)) return invalid_argument("migration '" + id + "' already exists here");
  // shm is offered beside tcp, never instead: a target without it still takes the migration.
  std::unique_ptr<migration::ShmSocketDir> shm_dir;
  std::unique_ptr<migration::ShmListener> shm;
  if (Status st = listen_shm(&shm_dir, &shm); st.ok()) {
    endpoints["shm"] = shm->endpoint();
  } else {
    log_warn("migration " + id + " (target): no shm endpoint, offering tcp only: " + st.to_string());
  }
  auto m = std::make_unique<Migration>();
  m->id = id;
  m->role = "target";
  m->phase = "TargetLoading";
  Migration* raw = m.get();
  migrations_[id] = std::move(m);
  raw->worker =
      std::thread([this, raw, tcp = std::move(tcp), shm = std::move(shm), shm_dir = std::move(shm_dir)]() mutable {
        run_target(raw, std::move(tcp), std::move(shm), std::move(shm_dir), host_.model_digest);
      });
  return json{{"id", id},
              {"data_endpoint", tcp_endpoint},
              {"data_endpoints", endpoints},
              {"node_id", migration::local_node_id()}};
}

void MigrationController::run_target(Migration* m, std::unique_ptr<migration::TcpListener> tcp,
                                     std::unique_ptr<migration::ShmListener> shm,
                                     std::unique_ptr<migration::ShmSocketDir> shm_dir, std::string digest) {
  // The source connects to one of the listeners. Waits in slices, so that abort() and
  // shutdown() end the wait.
  const auto deadline = std::chrono::steady_clock::now() + kTransferTimeout;
  StatusOr<std::unique_ptr<migration::ChunkReceiver>> receiver =
      unavailable("timed out after " + std::to_string(kTransferTimeout.count()) +
                  " ms waiting for the migration source to connect (" + (shm ? "tcp or shm" : "tcp") + ")");
  std::string transport;
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (m->cancelled) {
        receiver = failed_precondition("migration aborted before the source connected");
        break;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    pollfd fds[2] = {{tcp->fd(), POLLIN, 0}, {shm ? shm->fd() : -1, POLLIN, 0}};
    const auto slice =
        std::min<std::chrono::milliseconds>(kAcceptSlice, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    const int r = ::poll(fds, 2, static_cast<int>(slice.count()));
    if (r < 0 && errno != EINTR) {
      receiver = unavailable(std::string("poll() on the migration data listeners: ") + std::strerror(errno));
      break;
    }
    if (r <= 0) continue;
    const auto left =
        std::max(std::chrono::milliseconds(1),
                 std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (fds[0].revents == 0) {
      transport = "shm";
      receiver = shm->accept(left);
      break;
    }
    transport = host_.tls ? "tls" : "tcp";
    auto accepted = tcp->accept(left, {}, host_.tls.get());
    if (accepted.ok() || !host_.tls) {
      receiver = std::move(accepted);
      break;
    }
    // A peer that failed the TLS handshake is not the source (or is one without the
    // deployment's certificate): it is turned away, and the wait goes on for the real one.
    log_warn("migration " + m->id + " (target): refused a connection: " + accepted.status().to_string());
    receiver = unavailable("timed out after " + std::to_string(kTransferTimeout.count()) +
                           " ms waiting for the migration source to connect; the last connection was refused: " +
                           accepted.status().message());
  }
  tcp.reset();
  shm.reset();  // its socket file goes with it, then the directory
  shm_dir.reset();
  if (!receiver.ok()) {
    std::lock_guard<std::mutex> lk(mu_);
    m->phase = "Failed";
    m->error = receiver.status().to_string();
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    m->receiver = std::move(*receiver);
    m->transport = transport;
    m->phase = "PreCopy";
  }
  migration::TargetPlan plan;
  plan.model_digest = digest;
  plan.timeout = kTransferTimeout;
  migration::TargetHooks hooks;
  hooks.on_imported = [this](const engine::SequenceSnapshot& snap, const json& params) {
    auto rs = ResponseState::from_json(params);
    ResponseState state;
    if (rs.ok()) {
      state = *rs;
    } else {
      state.id = snap.request.id;
      state.stream = true;
      state.tokens = static_cast<int64_t>(snap.generated.size());
    }
    // Every migrated request gets a stream here, whatever its client asked for: the source's
    // relay (or the client itself, reconnecting) follows it.
    auto sse = host_.new_stream(snap.request.id, state.last_event_id + 1);
    sse->set_outlives_consumer(true);
    auto sink = std::make_shared<ResponseSink>(host_.sink_host, web::http::http_request(), state,
                                               std::chrono::steady_clock::now(), sse);
    host_.service->adopt_sink(snap.request.id, sink);
  };
  hooks.on_dropped = [this, id = m->id](const std::vector<std::string>& ids) {
    for (auto& [rid, sink] : host_.service->take_sinks(ids))
      sink->on_failure(unavailable("migration " + id + " rolled back after this agent imported request '" + rid +
                                   "': its source gave up on the switch and serves it"));
  };
  auto report = migration::run_target(plan, *m->receiver, engine_call(), hooks);
  std::lock_guard<std::mutex> lk(mu_);
  if (!report.ok()) {
    m->phase = "Failed";
    m->error = report.status().to_string();
    observe_locked(*m, "failed", 0, -1);
    return;
  }
  m->report = report->to_json();
  m->phase = report->result == "switched" ? "Completed" : report->result == "rolled_back" ? "RolledBack" : "Failed";
  m->error = report->error;
  observe_locked(*m, report->result, 0, -1);
  log_info("migration " + m->id + " (target, over " + m->transport + "): " + m->report.dump());
}

StatusOr<json> MigrationController::start(const std::string& id, const json& body) {
  if (!body.is_object()) return invalid_argument("the body must be a JSON object");
  for (const char* key : {"data_endpoint", "target_url"})
    if (!body.contains(key) || !body[key].is_string())
      return invalid_argument(std::string("'") + key + "' (a string) is required");
  HOTSWAP_ASSIGN_OR_RETURN(DataEndpoint endpoint, parse_data_endpoint(body["data_endpoint"].get<std::string>()));
  if (endpoint.transport == "tls" && !host_.tls)
    return failed_precondition("data_endpoint '" + body["data_endpoint"].get<std::string>() + "' is TLS, and " +
                               kNoTlsMaterial + " to authenticate to the target with");
  if (endpoint.transport == "tcp" && !host_.allow_plaintext)
    return failed_precondition("data_endpoint '" + body["data_endpoint"].get<std::string>() +
                               "' is plaintext, and this agent does not send a migration in the clear (" +
                               kAllowPlaintextFlag + " allows it); give both agents the deployment's TLS material");
  if (body.contains("mode") && !body["mode"].is_string()) return invalid_argument("'mode' must be a string");
  HOTSWAP_RETURN_IF_ERROR(migration::parse_migration_mode(body.value("mode", std::string("kv"))).status());
  if (body.contains("downtime_budget_ms") &&
      (!body["downtime_budget_ms"].is_number() || body["downtime_budget_ms"].get<double>() < 0))
    return invalid_argument("'downtime_budget_ms' must be a number >= 0");
  if (body.contains("max_rounds") && (!body["max_rounds"].is_number_integer() || body["max_rounds"].get<int64_t>() < 0 ||
                                      body["max_rounds"].get<int64_t>() > 1000))
    return invalid_argument("'max_rounds' must be an integer in 0..1000 (0: stop-and-copy)");
  if (body.contains("bandwidth_cap_bytes_per_s") && !body["bandwidth_cap_bytes_per_s"].is_number_unsigned())
    return invalid_argument("'bandwidth_cap_bytes_per_s' must be an integer >= 0");
  if (body.contains("switch_timeout_ms") &&
      (!body["switch_timeout_ms"].is_number_integer() || body["switch_timeout_ms"].get<int64_t>() < 1 ||
       body["switch_timeout_ms"].get<int64_t>() > 600000))
    return invalid_argument("'switch_timeout_ms' must be an integer in 1..600000");
  if (body.contains("sequences")) {
    if (!body["sequences"].is_array()) return invalid_argument("'sequences' must be an array of request ids");
    for (const auto& s : body["sequences"])
      if (!s.is_string()) return invalid_argument("'sequences' must be an array of request ids (strings)");
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (migrations_.count(id)) return invalid_argument("migration '" + id + "' already exists here");
  auto m = std::make_unique<Migration>();
  m->id = id;
  m->role = "source";
  m->phase = "PreCopy";
  Migration* raw = m.get();
  migrations_[id] = std::move(m);
  raw->worker = std::thread([this, raw, body] { run_source(raw, body); });
  return json{{"id", id}, {"phase", "PreCopy"}};
}

void MigrationController::run_source(Migration* m, json body) {
  auto fail = [&](const Status& st) {
    std::lock_guard<std::mutex> lk(mu_);
    m->phase = "Failed";
    m->error = st.to_string();
    observe_locked(*m, "failed", 0, -1);
    log_warn("migration " + m->id + " (source) failed: " + m->error);
  };
  auto ep = parse_data_endpoint(body["data_endpoint"].get<std::string>());  // checked by start()
  migration::SenderOptions so;
  so.bandwidth_cap_bytes_per_s = body.value("bandwidth_cap_bytes_per_s", uint64_t{0});
  auto sender = ep->transport == "shm"
                    ? migration::shm_connect(ep->path, so, kTransferTimeout)
                    : migration::tcp_connect(ep->host, ep->port, so, kTransferTimeout,
                                             ep->transport == "tls" ? host_.tls.get() : nullptr);
  if (!sender.ok()) return fail(sender.status());
  {
    std::lock_guard<std::mutex> lk(mu_);
    m->sender = std::move(*sender);
    m->transport = ep->transport;
  }
  migration::SourcePlan plan;
  plan.migration_id = m->id;
  plan.source = host_.self_name;
  plan.model_digest = host_.model_digest;
  plan.architecture = host_.architecture;
  plan.weight_dtype = host_.weight_dtype;
  plan.mode = *migration::parse_migration_mode(body.value("mode", std::string("kv")));
  plan.downtime_budget_ms = body.value("downtime_budget_ms", 50.0);
  plan.max_rounds = body.value("max_rounds", 8);
  plan.timeout = kTransferTimeout;
  plan.switch_timeout = std::chrono::milliseconds(body.value("switch_timeout_ms", int64_t{0}));
  // For auto: this agent's own prefill rate stands for the target's (same model; a target on
  // other hardware differs, and long contexts prefill slower than the measured prompts).
  if (auto svc = host_.service->status(); svc.ok()) plan.prefill_tokens_per_s = svc->engine.prefill_tokens_per_s;
  if (body.contains("sequences") && body["sequences"].is_array())
    for (const auto& s : body["sequences"])
      if (s.is_string()) plan.request_ids.push_back(s.get<std::string>());
  std::map<std::string, std::shared_ptr<RequestSink>> taken;
  migration::SourceHooks hooks;
  hooks.params = [this](const std::string& rid) {
    auto sink = std::dynamic_pointer_cast<ResponseSink>(host_.service->sink_of(rid));
    return sink ? sink->state().to_json() : json::object();
  };
  hooks.on_detached = [&](const std::vector<std::string>& ids) { taken = host_.service->take_sinks(ids); };
  hooks.on_restored = [&](const std::vector<std::string>& ids) {
    for (const auto& rid : ids)
      if (auto it = taken.find(rid); it != taken.end()) host_.service->adopt_sink(rid, it->second);
    taken.clear();
  };
  auto report = migration::run_source(plan, *m->sender, engine_call(), hooks);
  if (!report.ok()) return fail(report.status());
  std::lock_guard<std::mutex> lk(mu_);
  m->report = report->to_json();
  m->error = report->error;
  observe_locked(*m, report->result, static_cast<int64_t>(report->rounds.size()),
                 report->result == "switched" ? report->switch_ms : -1);
  if (report->result != "switched") {
    m->phase = report->result == "rolled_back" ? "RolledBack" : "Failed";
    log_warn("migration " + m->id + " (source): " + m->report.dump());
    return;
  }
  // Draining: the clients still connected here follow their requests on the target.
  m->phase = "Draining";
  const std::string target_url = body["target_url"].get<std::string>();
  if (host_.on_switched) host_.on_switched(target_url);
  for (auto& [rid, sink] : taken) {
    auto rs = std::dynamic_pointer_cast<ResponseSink>(sink);
    if (!rs) continue;
    ResponseState st = rs->state();
    StreamRelayOptions ro;
    ro.url = target_url;
    ro.request_id = rid;
    ro.last_event_id = st.last_event_id;
    ro.first_index = st.tokens;
    m->relays_open->fetch_add(1);
    m->relays.push_back(StreamRelay::start(ro, sink, [id = m->id, rid, open = m->relays_open](const Status& s) {
      open->fetch_sub(1);
      if (!s.ok()) log_warn("migration " + id + ": relay of " + rid + ": " + s.to_string());
    }));
  }
  log_info("migration " + m->id + " (source, over " + m->transport + "): " + m->report.dump());
}

void MigrationController::observe_locked(const Migration& m, const std::string& result, int64_t rounds,
                                         double switch_ms) {
  if (host_.metrics == nullptr) return;
  ServerMetrics::MigrationOutcome o;
  o.role = m.role;
  o.result = result;
  o.transport = m.transport.empty() ? "none" : m.transport;
  if (m.sender) {
    const auto s = m.sender->stats();
    o.bytes_sent = static_cast<double>(s.bytes_sent);
  }
  if (m.receiver) o.bytes_received = static_cast<double>(m.receiver->stats().bytes_received);
  o.precopy_rounds = rounds;
  o.switch_seconds = switch_ms >= 0 ? switch_ms / 1000.0 : -1;
  host_.metrics->observe_migration(o);
}

StatusOr<json> MigrationController::get(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = migrations_.find(id);
  if (it == migrations_.end()) return not_found("no migration '" + id + "' on this agent");
  const Migration& m = *it->second;
  std::string phase = m.phase;
  if (m.role == "source" && phase == "Draining" && m.relays_open->load() == 0) phase = "Completed";
  json j = {{"id", m.id}, {"role", m.role}, {"phase", phase}, {"report", m.report}};
  if (m.role == "source" && m.phase == "Draining") j["relays_open"] = m.relays_open->load();
  if (!m.transport.empty()) j["transport"] = m.transport;
  if (!m.error.empty()) j["error"] = m.error;
  if (m.sender)
    j["transfer"] = {{"bytes_sent", m.sender->stats().bytes_sent},
                     {"bytes_per_s", m.sender->stats().bytes_per_s},
                     {"chunks_resent", m.sender->stats().chunks_resent}};
  return j;
}

Status MigrationController::abort(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = migrations_.find(id);
  if (it == migrations_.end()) return not_found("no migration '" + id + "' on this agent");
  Migration& m = *it->second;
  m.cancelled = true;
  if (m.sender) m.sender->abort(failed_precondition("migration aborted by the operator"));
  if (m.receiver) m.receiver->abort(failed_precondition("migration aborted by the operator"));
  return Status();
}

}  // namespace hotswap::agent
