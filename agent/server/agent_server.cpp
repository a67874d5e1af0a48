#include "agent/server/agent_server.h"

#include <cpprest/http_client.h>
#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "agent/migration/model_digest.h"
#include "agent/migration/shm_transport.h"
#include "agent/server/engine_service.h"
#include "agent/server/migration_controller.h"
#include "agent/server/openai_protocol.h"
#include "agent/server/response_sink.h"
#include "agent/server/server_metrics.h"
#include "agent/server/sse_stream.h"
#include "common/connection_guard.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"

namespace hotswap::agent {

namespace fs = std::filesystem;
using nlohmann::json;
using web::http::http_request;
using web::http::http_response;
using web::http::methods;
using web::http::status_code;
using Clock = std::chrono::steady_clock;

namespace {

// Every route's body, read before the route runs (http::open_listener): a prompt of a whole
// context fits many times over.
constexpr size_t kMaxBodyBytes = 4 << 20;

// A reply the listener or the connection guard makes itself (a body over the cap, a head too
// large or too slow, too many connections, an exception out of a handler).
ApiError listener_error(int status, const std::string& message) {
  ApiError e;
  e.http_status = status;
  e.type = status >= 500 ? "server_error" : "invalid_request_error";
  if (status == 413) e.code = "request_too_large";
  if (status == 431) e.code = "header_too_large";
  if (status == 408) e.code = "request_timeout";
  if (status == 503) e.code = "too_many_connections";
  e.message = message;
  return e;
}

// The endpoint label of the request metrics for a path.
std::string route_label(const std::string& path) {
  if (path.rfind("/v1/completions", 0) == 0) return endpoint_label(Endpoint::kCompletions);
  if (path.rfind("/v1/chat/completions", 0) == 0) return endpoint_label(Endpoint::kChatCompletions);
  if (path.rfind("/control/", 0) == 0) return "control";
  if (path.rfind("/v1/streams/", 0) == 0) return "streams";
  return "other";
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

class AgentServer::Impl : public SinkHost, public std::enable_shared_from_this<AgentServer::Impl> {
 public:
  std::shared_ptr<const engine::Model> model;
  std::unique_ptr<EngineService> service;
  std::unique_ptr<MigrationController> migrations;  // after service: destroyed before it
  ServerMetrics metrics;
  AgentServerOptions options;
  ChatFormat chat_format = ChatFormat::kPlain;
  std::string bos_token;
  int max_model_len = 0;
  std::string device;  // the engine's backend: "cpu" or "cuda"
  std::unique_ptr<web::http::experimental::listener::http_listener> listener;  // on 127.0.0.1, behind the guard
  std::unique_ptr<http::ConnectionGuard> guard;                               // on options.host:port
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> replies_in_flight{0};
  std::atomic<uint64_t> next_request{0};
  std::string id_prefix;
  std::shared_ptr<SseWriter> sse_writer = std::make_shared<SseWriter>();  // every stream's buffer writes
  std::mutex streams_mu;
  // Streams by request id, live or recently finished, for resumption with Last-Event-ID.
  std::map<std::string, std::shared_ptr<SseStream>> streams;
  std::mutex heartbeat_mu;
  std::condition_variable heartbeat_cv;
  std::thread heartbeat_thread;

  void handle(http_request req, const std::string& body);
  void handle_generate(http_request req, Endpoint endpoint, const std::string& body);
  // After a migration switched away from this agent: new requests go to its target, so none is
  // refused while the Service's endpoints and the clients' pooled connections move over.
  void forward_request(const http_request& req, Endpoint endpoint, const std::string& body, const std::string& to);
  std::string forward_target() {
    std::lock_guard<std::mutex> lk(forward_mu);
    return forward_to;
  }
  std::mutex forward_mu;
  std::string forward_to;
  // GPU faults reported for this agent's card (POST /control/v1/faults: the injection point of
  // the fault tests, and where a node-side monitor of Xid/ECC/thermal events reports). The
  // agent keeps serving; /healthz and /control/v1/status show them, and the operator moves the
  // replica off.
  void handle_faults(http_request req, const std::string& body);
  nlohmann::json faults_json() {
    std::lock_guard<std::mutex> lk(faults_mu);
    return gpu_faults;
  }
  std::mutex faults_mu;
  nlohmann::json gpu_faults = nlohmann::json::array();
  void handle_control(http_request req, const std::string& path, const std::string& body);
  void handle_migration(http_request req, const std::string& path, const std::string& body);
  void reply_status(const http_request& req, const StatusOr<nlohmann::json>& result);
  void handle_resume(http_request req, const std::string& request_id);
  std::shared_ptr<SseStream> new_stream(const std::string& request_id, int64_t next_event_id);
  // SinkHost
  ServerMetrics& sink_metrics() override { return metrics; }
  void reply_error(const http_request& req, const std::string& endpoint, const ApiError& e) override;
  // Replies and tracks the reply until it has been sent.
  void track_reply(pplx::task<void> reply, std::function<void(bool ok)> done = nullptr) override;
  void cancel_request(const std::string& request_id) override {
    if (service) service->cancel(request_id);
  }
  void heartbeat_loop();
};

void AgentServer::Impl::track_reply(pplx::task<void> reply, std::function<void(bool ok)> done) {
  ++replies_in_flight;
  std::weak_ptr<Impl> weak = weak_from_this();
  reply.then([weak, done](pplx::task<void> t) {
    bool ok = true;
    try {
      t.get();
    } catch (...) {
      ok = false;
    }
    if (done) done(ok);
    if (auto self = weak.lock()) --self->replies_in_flight;
  });
}

void AgentServer::Impl::reply_error(const http_request& req, const std::string& endpoint, const ApiError& e) {
  metrics.count_request(endpoint, e.http_status);
  http_response response(static_cast<status_code>(e.http_status));
  response.set_body(e.to_json().dump(), "application/json");
  if (e.http_status == 429) response.headers().add("Retry-After", "1");
  if (e.http_status == 401) response.headers().add("WWW-Authenticate", "Bearer");
  try {
    track_reply(req.reply(response));
  } catch (const std::exception&) {
  }
}

void AgentServer::Impl::handle(http_request req, const std::string& body) {
  std::string path = req.relative_uri().path();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto& method = req.method();
  auto wrong_method = [&](const char* allowed) {
    ApiError e;
    e.http_status = 405;
    e.message = "method " + method + " is not allowed on " + path + "; use " + allowed;
    reply_error(req, "other", e);
  };
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (method != methods::POST) return wrong_method("POST");
    Endpoint ep = path == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChatCompletions;
    return handle_generate(req, ep, body);
  }
  if (path == "/v1/models") {
    if (method != methods::GET) return wrong_method("GET");
    json body = {{"object", "list"},
                 {"data", json::array({{{"id", options.model_name},
                                        {"object", "model"},
                                        {"created", unix_seconds()},
                                        {"owned_by", "hotswap"},
                                        {"max_model_len", max_model_len}}})}};
    metrics.count_request("models", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK, body));
  }
  if (path == "/healthz") {
    const json faults = faults_json();
    // Still 200: the process is alive (a liveness probe must not restart a replica that is
    // being moved off its faulty card); "status" and gpu_faults say what is wrong.
    json body = {{"status", faults.empty() ? "ok" : "gpu_fault"}, {"device", device}, {"model", options.model_name},
                 {"speed_factor", options.speed_factor}, {"gpu_faults", faults}};
    return track_reply(http::reply_json(req, web::http::status_codes::OK, body));
  }
  if (path == "/readyz") {
    bool ready = !service->draining() && !stopping.load();
    json body = {{"status", ready ? "ready" : "draining"}};
    return track_reply(
        http::reply_json(req, ready ? web::http::status_codes::OK : web::http::status_codes::ServiceUnavailable, body));
  }
  if (path == "/metrics") {
    http_response response(web::http::status_codes::OK);
    response.set_body(render_metrics_text(metrics.registry()), "text/plain; version=0.0.4");
    return track_reply(req.reply(response));
  }
  if (path.rfind("/control/v1/", 0) == 0) return handle_control(req, path, body);
  if (path.rfind("/v1/streams/", 0) == 0) {
    if (method != methods::GET) return wrong_method("GET");
    return handle_resume(req, path.substr(std::string("/v1/streams/").size()));
  }
  ApiError e;
  e.http_status = 404;
  e.message = "no route for " + method + " " + path;
  e.code = "not_found";
  reply_error(req, "other", e);
}

void AgentServer::Impl::handle_generate(http_request req, Endpoint endpoint, const std::string& body) {
  auto arrival = Clock::now();
  const char* label = endpoint_label(endpoint);
  ApiRequest api;
  if (auto e = parse_api_request(body, endpoint, options.model_name, &api)) return reply_error(req, label, *e);
  if (std::string to = forward_target(); !to.empty()) return forward_request(req, endpoint, body, to);
  if (service->draining() || stopping.load()) {
    ApiError e;
    e.http_status = 503;
    e.type = "service_unavailable";
    e.code = "draining";
    e.message = "this replica is draining and takes no new requests";
    return reply_error(req, label, e);
  }
  std::string id = (endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-") + id_prefix +
                   std::to_string(next_request.fetch_add(1));
  engine::GenerationRequest gen;
  if (auto e = build_generation_request(api, model->tokenizer(), chat_format, bos_token, max_model_len, id, &gen))
    return reply_error(req, label, *e);
  std::shared_ptr<SseStream> sse = api.stream ? new_stream(id, 0) : nullptr;
  ResponseState rs;
  rs.endpoint = endpoint;
  rs.id = id;
  rs.model = options.model_name;
  rs.created = unix_seconds();
  rs.prompt_tokens = static_cast<int64_t>(gen.prompt.size());
  rs.stream = api.stream;
  rs.include_usage = api.include_usage;
  auto sink = std::make_shared<ResponseSink>(std::weak_ptr<SinkHost>(shared_from_this()), req, rs, arrival, sse);
  Status st = service->submit(std::move(gen), sink);
  if (!st.ok()) {
    if (sse) {
      std::lock_guard<std::mutex> lk(streams_mu);
      streams.erase(id);
    }
    return reply_error(req, label, status_to_api_error(st));
  }
  if (api.stream) {
    metrics.count_request(label, 200);
    sink->start_stream();
  }
}

void AgentServer::Impl::forward_request(const http_request& req, Endpoint endpoint, const std::string& body,
                                        const std::string& to) {
  const char* label = endpoint_label(endpoint);
  std::shared_ptr<web::http::client::http_client> client;
  try {
    web::http::client::http_client_config config;
    config.set_timeout(std::chrono::seconds(300));  // between two reads: a stream's tokens keep it alive
    client = std::make_shared<web::http::client::http_client>(to, config);
  } catch (const std::exception& ex) {
    ApiError e;
    e.http_status = 502;
    e.type = "server_error";
    e.message = "this replica moved to " + to + ", which cannot be reached: " + ex.what();
    return reply_error(req, label, e);
  }
  http_request out(methods::POST);
  out.set_request_uri(req.relative_uri());
  out.set_body(body, "application/json");
  for (const char* h : {"Accept", "Authorization"})
    if (req.headers().has(h)) out.headers().add(h, req.headers().find(h)->second);
  std::weak_ptr<Impl> weak = weak_from_this();
  client->request(out).then([weak, client, req, label, to](pplx::task<http_response> t) {
    auto self = weak.lock();
    if (!self) return;
    try {
      http_response got = t.get();
      http_response back(got.status_code());
      for (const auto& [name, value] : got.headers())
        if (name != "Content-Length" && name != "Content-Type" && name != "Transfer-Encoding" && name != "Connection")
          back.headers().add(name, value);
      // The client's next request should go through the Service again, not to this replica.
      back.headers().add("Connection", "close");
      back.set_body(got.body(), got.headers().content_type());  // streamed as the target writes it
      self->metrics.count_request(label, got.status_code());
      self->track_reply(req.reply(back), [client](bool) {});  // the client lives until the body is sent
    } catch (const std::exception& ex) {
      ApiError e;
      e.http_status = 502;
      e.type = "server_error";
      e.message = "this replica moved to " + to + ", and forwarding the request there failed: " + ex.what();
      self->reply_error(req, label, e);
    }
  });
}

void AgentServer::Impl::handle_faults(http_request req, const std::string& body) {
  if (req.method() == methods::GET) {
    metrics.count_request("control", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK, {{"gpu_faults", faults_json()}}));
  }
  if (req.method() == methods::DEL) {  // the card was repaired or replaced
    {
      std::lock_guard<std::mutex> lk(faults_mu);
      gpu_faults = json::array();
    }
    metrics.set_gpu_faulty(false);
    log_info("control: GPU faults cleared");
    metrics.count_request("control", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK, {{"gpu_faults", json::array()}}));
  }
  if (req.method() != methods::POST) {
    ApiError e;
    e.http_status = 405;
    e.message = "use GET, POST or DELETE on /control/v1/faults";
    return reply_error(req, "control", e);
  }
  ApiError e;
  json fault_in;
  try {
    fault_in = json::parse(body);
  } catch (const std::exception& ex) {
    e.message = std::string("the request body is not valid JSON: ") + ex.what();
    return reply_error(req, "control", e);
  }
  const std::string kind = fault_in.is_object() ? fault_in.value("kind", std::string()) : std::string();
  if (kind != "xid" && kind != "ecc" && kind != "thermal") {
    e.param = "kind";
    e.message = "'kind' must be one of xid, ecc, thermal";
    return reply_error(req, "control", e);
  }
  if (fault_in.contains("message") && !fault_in["message"].is_string()) {
    e.param = "message";
    e.message = "'message' must be a string";
    return reply_error(req, "control", e);
  }
  json fault = {{"kind", kind}, {"message", fault_in.value("message", std::string())}, {"time", unix_seconds()}};
  json all;
  {
    std::lock_guard<std::mutex> lk(faults_mu);
    gpu_faults.push_back(fault);
    all = gpu_faults;
  }
  metrics.count_gpu_fault(kind);
  metrics.set_gpu_faulty(true);
  log_warn("control: GPU fault reported: " + fault.dump());
  metrics.count_request("control", 200);
  track_reply(http::reply_json(req, web::http::status_codes::OK, {{"gpu_faults", all}}));
}

void AgentServer::Impl::handle_control(http_request req, const std::string& path, const std::string& body) {
  ApiError e;
  if (options.control_token.empty()) {
    e.http_status = 401;
    e.type = "authentication_error";
    e.message = "the control API is disabled: start the agent with --control-token-file";
    return reply_error(req, "control", e);
  }
  std::string token = http::bearer_token(req);
  if (token.empty()) {
    e.http_status = 401;
    e.type = "authentication_error";
    e.message = "the control API needs an 'Authorization: Bearer <token>' header";
    return reply_error(req, "control", e);
  }
  if (!http::constant_time_equals(token, options.control_token)) {
    e.http_status = 403;
    e.type = "permission_error";
    e.message = "the bearer token is not the control token";
    return reply_error(req, "control", e);
  }
  if (path == "/control/v1/status" && req.method() == methods::GET) {
    auto st = service->status();
    if (!st.ok()) return reply_error(req, "control", status_to_api_error(st.status()));
    json seqs = json::array();
    for (const auto& s : st->sequences)
      seqs.push_back({{"id", s.request_id},
                      {"state", s.state},
                      {"prompt_tokens", s.prompt_tokens},
                      {"generated_tokens", s.generated_tokens},
                      {"position", s.position},
                      {"blocks", s.blocks}});
    json body = {{"draining", st->draining},
                 {"open_requests", st->open_requests},
                 {"queue", st->engine.waiting},
                 {"running", st->engine.running},
                 {"kv_blocks",
                  {{"total", st->engine.kv_blocks_total},
                   {"used", st->engine.kv_blocks_used},
                   {"free", st->engine.kv_blocks_total - st->engine.kv_blocks_used}}},
                 {"sequences", seqs},
                 // Where the engine's time went; speed < 1: a slower card on the CPU backend.
                 {"engine",
                  {{"speed", service->engine().options().speed},
                   {"steps_total", st->engine.steps_total},
                   {"forward_seconds_total", st->engine.forward_seconds_total},
                   {"throttle_seconds_total", st->engine.throttle_seconds_total},
                   {"prefill_tokens_per_s", st->engine.prefill_tokens_per_s}}},
                 {"gpu_faults", faults_json()},
                 {"node_id", migration::local_node_id()}};  // `migrate --transport auto` compares it
    if (migrations) {  // what a migration client checks against a target before it prepares one
      const json identity = migrations->identity();
      for (const auto& [k, v] : identity.items()) body[k] = v;
    }
    metrics.count_request("control", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK, body));
  }
  if (path == "/control/v1/drain" && req.method() == methods::POST) {
    service->drain();
    log_info("control: drain requested; open requests: " + std::to_string(service->open_requests()));
    metrics.count_request("control", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK,
                                        {{"draining", true}, {"open_requests", service->open_requests()}}));
  }
  if (path == "/control/v1/migrations" || path.rfind("/control/v1/migrations/", 0) == 0)
    return handle_migration(req, path, body);
  if (path == "/control/v1/faults") return handle_faults(req, body);
  e.http_status = 404;
  e.code = "not_found";
  e.message = "no control route for " + req.method() + " " + path;
  reply_error(req, "control", e);
}

std::shared_ptr<SseStream> AgentServer::Impl::new_stream(const std::string& request_id, int64_t next_event_id) {
  std::weak_ptr<Impl> weak = weak_from_this();
  auto sse = std::make_shared<SseStream>(
      request_id, next_event_id, options.resume_log_events,
      [weak](const http_request& r, http_response response, std::function<void(bool)> done) {
        if (auto self = weak.lock()) {
          try {
            self->track_reply(r.reply(response), std::move(done));
          } catch (const std::exception&) {
            done(false);
          }
        }
      },
      sse_writer);
  std::lock_guard<std::mutex> lk(streams_mu);
  streams[request_id] = sse;
  return sse;
}

void AgentServer::Impl::handle_resume(http_request req, const std::string& request_id) {
  std::shared_ptr<SseStream> sse;
  {
    std::lock_guard<std::mutex> lk(streams_mu);
    auto it = streams.find(request_id);
    if (it != streams.end()) sse = it->second;
  }
  ApiError e;
  if (!sse) {
    e.http_status = 404;
    e.code = "stream_not_found";
    e.message = "no stream '" + request_id + "' on this server (unknown, or finished more than " +
                std::to_string(options.resume_ttl.count()) + " s ago)";
    return reply_error(req, "streams", e);
  }
  int64_t last = -1;
  auto it = req.headers().find("Last-Event-ID");
  if (it != req.headers().end()) {
    try {
      size_t used = 0;
      last = std::stoll(it->second, &used);
      if (used != it->second.size() || last < 0) throw std::invalid_argument(it->second);
    } catch (const std::exception&) {
      e.param = "Last-Event-ID";
      e.message = "the Last-Event-ID header must be a non-negative event id, got '" + it->second + "'";
      return reply_error(req, "streams", e);
    }
  }
  // A resumed consumer that goes away ends the request, as the first one would have; but a
  // stream migrated here waits for its client to come back.
  std::weak_ptr<Impl> weak = weak_from_this();
  const bool keep = sse->outlives_consumer();
  Status st = sse->attach(req, last, [weak, request_id, keep] {
    if (auto self = weak.lock(); self && !keep) self->service->cancel(request_id);
  });
  if (!st.ok()) {
    e = status_to_api_error(st);
    if (st.code() == StatusCode::kFailedPrecondition) {
      e.http_status = 410;
      e.type = "invalid_request_error";
      e.code = "events_gone";
    }
    e.param = "Last-Event-ID";
    return reply_error(req, "streams", e);
  }
  metrics.count_request("streams", 200);
}

void AgentServer::Impl::reply_status(const http_request& req, const StatusOr<nlohmann::json>& result) {
  if (result.ok()) {
    metrics.count_request("control", 200);
    return track_reply(http::reply_json(req, web::http::status_codes::OK, *result));
  }
  ApiError e = status_to_api_error(result.status());
  if (result.status().code() == StatusCode::kNotFound) e.http_status = 404;
  if (result.status().code() == StatusCode::kFailedPrecondition) e.http_status = 409;
  reply_error(req, "control", e);
}

void AgentServer::Impl::handle_migration(http_request req, const std::string& path, const std::string& body) {
  // /control/v1/migrations[/{id}[/start|/abort]]
  std::string rest = path.substr(std::string("/control/v1/migrations").size());
  if (!rest.empty()) rest.erase(0, 1);
  std::string id = rest.substr(0, rest.find('/'));
  std::string action = rest.find('/') == std::string::npos ? "" : rest.substr(rest.find('/') + 1);
  const auto method = req.method();
  if (id.empty() && method == methods::GET) {
    ApiError e;
    e.http_status = 405;
    e.message = "list migrations one by one: GET /control/v1/migrations/{id}";
    return reply_error(req, "control", e);
  }
  if (method == methods::GET && action.empty()) return reply_status(req, migrations->get(id));
  if (method != methods::POST || !(id.empty() || action == "start" || action == "abort")) {
    ApiError e;
    e.http_status = 404;
    e.code = "not_found";
    e.message = "no migration route for " + method + " " + path;
    return reply_error(req, "control", e);
  }
  nlohmann::json args = nlohmann::json::object();
  try {
    if (!body.empty()) args = nlohmann::json::parse(body);
  } catch (const std::exception& ex) {
    ApiError e;
    e.message = std::string("the request body is not valid JSON: ") + ex.what();
    return reply_error(req, "control", e);
  }
  if (id.empty()) return reply_status(req, migrations->prepare(args));
  if (action == "start") return reply_status(req, migrations->start(id, args));
  Status st = migrations->abort(id);
  reply_status(req, st.ok() ? StatusOr<nlohmann::json>(nlohmann::json{{"id", id}, {"aborted", true}})
                            : StatusOr<nlohmann::json>(st));
}

void AgentServer::Impl::heartbeat_loop() {
  std::unique_lock<std::mutex> lk(heartbeat_mu);
  while (!stopping.load()) {
    heartbeat_cv.wait_for(lk, options.heartbeat);
    if (stopping.load()) break;
    std::vector<std::shared_ptr<SseStream>> live;
    {
      std::lock_guard<std::mutex> slk(streams_mu);
      auto now = Clock::now();
      for (auto it = streams.begin(); it != streams.end();) {
        if (it->second->finished() && now - it->second->finished_at() > options.resume_ttl) {
          it = streams.erase(it);
        } else {
          live.push_back(it->second);
          ++it;
        }
      }
    }
    for (auto& s : live) s->heartbeat(options.heartbeat);
  }
}

StatusOr<std::unique_ptr<AgentServer>> AgentServer::start(std::shared_ptr<const engine::Model> model,
                                                          std::unique_ptr<engine::Engine> engine,
                                                          const AgentServerOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  if (impl->options.model_name.empty()) impl->options.model_name = fs::path(model->dir()).filename().string();
  impl->metrics.set_speed_factor(options.speed_factor);
  impl->max_model_len = engine->max_model_len();
  impl->device = engine->backend_name();
  // The chat template decides how chats become prompts (see openai_protocol.h).
  fs::path tc = fs::path(model->dir()) / "tokenizer_config.json";
  if (fs::exists(tc)) {
    std::ifstream in(tc);
    json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
      impl->chat_format = detect_chat_format(j["chat_template"].get<std::string>());
    if (j.is_object() && j.contains("bos_token") && j["bos_token"].is_string())
      impl->bos_token = j["bos_token"].get<std::string>();
  }
  std::random_device rd;
  char prefix[16];
  std::snprintf(prefix, sizeof(prefix), "%08x-", rd());
  impl->id_prefix = prefix;
  impl->model = std::move(model);
  EngineServiceOptions so;
  so.max_queue = options.max_queue;
  impl->service = std::make_unique<EngineService>(std::move(engine), so);
  auto digest = migration::model_weights_digest(impl->model->dir());
  if (!digest.ok()) return digest.status();
  MigrationHost mh;
  mh.service = impl->service.get();
  mh.metrics = &impl->metrics;
  mh.sink_host = std::weak_ptr<SinkHost>(impl);
  mh.listen_host = options.host;
  mh.data_port_first = options.migration_port_first;
  mh.data_port_last = options.migration_port_last;
  mh.tls = options.migration_tls;
  mh.allow_plaintext = options.allow_plaintext_migration;
  mh.self_name = "agent@" + options.host + ":" + std::to_string(options.port);
  mh.model_digest = *digest;
  mh.architecture = engine::architecture_name(impl->model->config().architecture);
  mh.weight_dtype = impl->model->embed_tokens().dtype;
  {
    std::weak_ptr<Impl> w = impl;
    mh.new_stream = [w](const std::string& id, int64_t next) -> std::shared_ptr<SseStream> {
      auto self = w.lock();
      return self ? self->new_stream(id, next) : nullptr;
    };
  }
  {
    std::weak_ptr<Impl> w = impl;
    mh.on_switched = [w](const std::string& target_url) {
      auto self = w.lock();
      if (!self) return;
      std::lock_guard<std::mutex> lk(self->forward_mu);
      self->forward_to = target_url;
      log_info("migrated to " + target_url + ": new requests are forwarded there");
    };
  }
  impl->migrations = std::make_unique<MigrationController>(mh);
  std::weak_ptr<Impl> weak = impl;
  impl->service->set_step_observer([weak](const engine::EngineStats& s) {
    if (auto self = weak.lock()) self->metrics.observe_engine(s, self->service->open_requests());
  });

  // cpprest's listener on a loopback port of its own, behind the connection guard on the
  // public address: the guard enforces the limits cpprest has not (common/connection_guard.h).
  StatusOr<std::unique_ptr<http::Listener>> listener = unavailable("no free loopback port");
  int inner_port = 0;
  for (int attempt = 0; attempt < 5 && !listener.ok(); ++attempt) {  // a port picked free may be taken
    HOTSWAP_ASSIGN_OR_RETURN(inner_port, http::pick_free_port());
    listener = http::open_listener(
        "http://127.0.0.1:" + std::to_string(inner_port),
        [weak](http_request req, std::string body) {
          if (auto self = weak.lock()) self->handle(req, body);
        },
        [weak](const http_request& req, int status, const std::string& message) {
          if (auto self = weak.lock()) self->metrics.count_request(route_label(req.relative_uri().path()), status);
          return listener_error(status, message).to_json();
        },
        kMaxBodyBytes);
  }
  if (!listener.ok()) return listener.status();
  impl->listener = std::move(listener).value();
  http::GuardHooks hooks;
  hooks.error_body = [](int status, const std::string& message) { return listener_error(status, message).to_json().dump(); };
  hooks.on_event = [weak](http::GuardEvent e) {
    if (auto self = weak.lock()) self->metrics.count_connection_closed(http::guard_event_name(e));
  };
  hooks.on_open_connections = [weak](int n) {
    if (auto self = weak.lock()) self->metrics.set_open_connections(n);
  };
  auto guard = http::ConnectionGuard::start(options.host, options.port, inner_port, options.connection_limits, hooks);
  if (!guard.ok()) {
    impl->listener->close().wait();
    return guard.status();
  }
  impl->guard = std::move(guard).value();
  impl->options.port = impl->guard->port();
  impl->heartbeat_thread = std::thread([impl_raw = impl.get()] { impl_raw->heartbeat_loop(); });
  log_info("serving model '" + impl->options.model_name + "' on http://" + options.host + ":" +
           std::to_string(impl->options.port));
  return std::unique_ptr<AgentServer>(new AgentServer(std::move(impl)));
}

AgentServer::AgentServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

AgentServer::~AgentServer() {
  stop();
}

std::string AgentServer::url() const {
  return "http://" + impl_->options.host + ":" + std::to_string(impl_->options.port);
}

void AgentServer::drain() {
  impl_->service->drain();
}

StatusOr<engine::EngineStats> AgentServer::engine_stats() {
  HOTSWAP_ASSIGN_OR_RETURN(ServiceStatus s, impl_->service->status());
  return s.engine;
}

bool AgentServer::wait_idle(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (impl_->service->open_requests() == 0 && impl_->replies_in_flight.load() == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return impl_->service->open_requests() == 0 && impl_->replies_in_flight.load() == 0;
}

void AgentServer::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->heartbeat_cv.notify_all();
  if (impl_->heartbeat_thread.joinable()) impl_->heartbeat_thread.join();
  // The engine first: open requests fail and their streams close, then the listener. The
  // service object stays until the Impl goes, since handlers may still be reading it.
  impl_->migrations->shutdown();  // aborts and joins migrations, cancels relays
  impl_->service->shutdown();
  try {
    impl_->listener->close().wait();
  } catch (const std::exception&) {
  }
  impl_->guard->stop();
}

}  // namespace hotswap::agent
