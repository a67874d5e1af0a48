#include "agent/server/migration_controller.h"

#include "agent/migration/migration_session.h"
#include "agent/migration/tcp_transport.h"
#include "common/log.h"

namespace hotswap::agent {

using nlohmann::json;

namespace {

constexpr std::chrono::milliseconds kTransferTimeout{30000};

StatusOr<std::pair<std::string, uint16_t>> parse_data_endpoint(const std::string& ep) {
  const std::string prefix = "tcp://";
  if (ep.rfind(prefix, 0) != 0) return invalid_argument("data_endpoint '" + ep + "' is not tcp://host:port");
  std::string rest = ep.substr(prefix.size());
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return invalid_argument("data_endpoint '" + ep + "' has no port");
  int port = std::atoi(rest.substr(colon + 1).c_str());
  if (port < 1 || port > 65535) return invalid_argument("data_endpoint '" + ep + "' has a bad port");
  return std::make_pair(rest.substr(0, colon), static_cast<uint16_t>(port));
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
      if (m->sender) m->sender->abort(unavailable("the agent is shutting down"));
      if (m->receiver) m->receiver->abort(unavailable("the agent is shutting down"));
      for (auto& r : m->relays) r->cancel();
      if (m->worker.joinable()) workers.push_back(std::move(m->worker));
    }
  }
  for (auto& w : workers) w.join();
}

migration::EngineCall MigrationController::engine_call() const {
  EngineService* svc = host_.service;
  return [svc](const std::function<Status(engine::Engine&)>& fn) { return svc->run_on_engine(fn); };
}

StatusOr<json> MigrationController::prepare(const json& body) {
  if (!body.is_object() || !body.contains("id") || !body["id"].is_string() || body["id"].get<std::string>().empty())
    return invalid_argument("'id' (a non-empty string) is required");
  const std::string id = body["id"].get<std::string>();
  const std::string digest = body.value("model_digest", std::string());
  if (!digest.empty() && digest != host_.model_digest)
    return failed_precondition("model digest " + digest + " is not this agent's " + host_.model_digest +
                               ": the target must run the source's weights");
  HOTSWAP_ASSIGN_OR_RETURN(auto listener, migration::TcpListener::listen(host_.listen_host, 0));
  auto shared = std::make_shared<migration::TcpListener>(std::move(listener));
  const uint16_t port = shared->port();
  std::lock_guard<std::mutex> lk(mu_);
  if (migrations_.count(id)) return invalid_argument("migration '" + id + "' already exists here");
  auto m = std::make_unique<Migration>();
  m->id = id;
  m->role = "target";
  m->phase = "TargetLoading";
  Migration* raw = m.get();
  migrations_[id] = std::move(m);
  raw->worker = std::thread([this, raw, shared] { run_target(raw, shared, host_.model_digest); });
  return json{{"id", id}, {"data_endpoint", "tcp://" + host_.listen_host + ":" + std::to_string(port)}};
}

void MigrationController::run_target(Migration* m, std::shared_ptr<void> listener_any, std::string digest) {
  auto listener = std::static_pointer_cast<migration::TcpListener>(listener_any);
  auto receiver = listener->accept(kTransferTimeout);
  if (!receiver.ok()) {
    std::lock_guard<std::mutex> lk(mu_);
    m->phase = "Failed";
    m->error = receiver.status().to_string();
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    m->receiver = std::move(*receiver);
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
  auto report = migration::run_target(plan, *m->receiver, engine_call(), hooks);
  std::lock_guard<std::mutex> lk(mu_);
  if (!report.ok()) {
    m->phase = "Failed";
    m->error = report.status().to_string();
    return;
  }
  m->report = report->to_json();
  m->phase = report->result == "switched" ? "Completed" : "Failed";
  m->error = report->error;
  log_info("migration " + m->id + " (target): " + m->report.dump());
}

StatusOr<json> MigrationController::start(const std::string& id, const json& body) {
  if (!body.is_object()) return invalid_argument("the body must be a JSON object");
  for (const char* key : {"data_endpoint", "target_url"})
    if (!body.contains(key) || !body[key].is_string())
      return invalid_argument(std::string("'") + key + "' (a string) is required");
  HOTSWAP_RETURN_IF_ERROR(parse_data_endpoint(body["data_endpoint"].get<std::string>()).status());
  HOTSWAP_RETURN_IF_ERROR(migration::parse_migration_mode(body.value("mode", std::string("kv"))).status());
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
    log_warn("migration " + m->id + " (source) failed: " + m->error);
  };
  auto ep = parse_data_endpoint(body["data_endpoint"].get<std::string>());
  migration::SenderOptions so;
  so.bandwidth_cap_bytes_per_s = body.value("bandwidth_cap_bytes_per_s", uint64_t{0});
  auto sender = migration::tcp_connect(ep->first, ep->second, so, kTransferTimeout);
  if (!sender.ok()) return fail(sender.status());
  {
    std::lock_guard<std::mutex> lk(mu_);
    m->sender = std::move(*sender);
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
  if (report->result != "switched") {
    m->phase = report->result == "rolled_back" ? "RolledBack" : "Failed";
    log_warn("migration " + m->id + " (source): " + m->report.dump());
    return;
  }
  // Draining: the clients still connected here follow their requests on the target.
  m->phase = "Draining";
  const std::string target_url = body["target_url"].get<std::string>();
  for (auto& [rid, sink] : taken) {
    auto rs = std::dynamic_pointer_cast<ResponseSink>(sink);
    if (!rs) continue;
    ResponseState st = rs->state();
    StreamRelayOptions ro;
    ro.url = target_url;
    ro.request_id = rid;
    ro.last_event_id = st.last_event_id;
    ro.first_index = st.tokens;
    m->relays.push_back(StreamRelay::start(ro, sink, [id = m->id, rid](const Status& s) {
      if (!s.ok()) log_warn("migration " + id + ": relay of " + rid + ": " + s.to_string());
    }));
  }
  log_info("migration " + m->id + " (source): " + m->report.dump());
}

StatusOr<json> MigrationController::get(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = migrations_.find(id);
  if (it == migrations_.end()) return not_found("no migration '" + id + "' on this agent");
  const Migration& m = *it->second;
  json j = {{"id", m.id}, {"role", m.role}, {"phase", m.phase}, {"report", m.report}};
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
  if (m.sender) m.sender->abort(failed_precondition("migration aborted by the operator"));
  if (m.receiver) m.receiver->abort(failed_precondition("migration aborted by the operator"));
  return Status();
}

}  // namespace hotswap::agent
