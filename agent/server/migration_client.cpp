#include "agent/server/migration_client.h"

#include <cpprest/http_client.h>

#include <cstdio>
#include <random>
#include <thread>

namespace hotswap::agent {

using nlohmann::json;

StatusOr<json> control_call(const std::string& base, const std::string& token, const std::string& method,
                            const std::string& path, const json& body, std::chrono::milliseconds timeout) {
  try {
    web::http::client::http_client_config config;
    config.set_timeout(timeout);
    web::http::client::http_client client(base, config);
    web::http::http_request req(method);
    req.set_request_uri(path);
    req.headers().add("Authorization", "Bearer " + token);
    if (!body.is_null()) req.set_body(body.dump(), "application/json");
    auto resp = client.request(req).get();
    std::string text = resp.extract_string(true).get();
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (resp.status_code() != web::http::status_codes::OK) {
      std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", text) : text;
      std::string what = method + " " + base + path + ": HTTP " + std::to_string(resp.status_code()) + ": " + msg;
      switch (resp.status_code()) {
        case 404: return not_found(std::move(what));
        case 400: return invalid_argument(std::move(what));
        case 401:
        case 403:
        case 409: return failed_precondition(std::move(what));
        default: return unavailable(std::move(what));
      }
    }
    if (j.is_discarded()) return data_loss(method + " " + base + path + ": the answer is not JSON");
    return j;
  } catch (const std::exception& e) {
    return unavailable(method + " " + base + path + ": " + e.what());
  }
}

namespace {

std::string string_field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

struct ChosenEndpoint {
  std::string transport;  // "tcp", "tls" or "shm"
  std::string endpoint;
};

// The endpoint the source connects to, by --transport: tcp; shm (an error when the target offers
// none); auto: shm when the target offers it and both agents report the same node id, else tcp.
StatusOr<ChosenEndpoint> choose_data_endpoint(const std::string& transport, const json& prepared,
                                              const std::string& source_node_id) {
  const json endpoints =
      prepared.is_object() && prepared.contains("data_endpoints") ? prepared["data_endpoints"] : json::object();
  std::string tcp = string_field(endpoints, "tcp");
  if (tcp.empty()) tcp = string_field(prepared, "data_endpoint");  // an agent from before data_endpoints
  const std::string shm = string_field(endpoints, "shm");
  const std::string target_node_id = string_field(prepared, "node_id");
  if (transport == "shm") {
    if (shm.empty()) {
      return failed_precondition("--transport shm: the target offers no shm endpoint (it answered " + prepared.dump() +
                                 "); its log says why");
    }
    return ChosenEndpoint{"shm", shm};
  }
  if (transport == "auto" && !shm.empty() && !target_node_id.empty() && target_node_id == source_node_id) {
    return ChosenEndpoint{"shm", shm};
  }
  if (tcp.empty()) return data_loss("the target's prepare answer names no tcp data endpoint: " + prepared.dump());
  // The network endpoint is tls:// when the target holds the deployment's TLS material.
  return ChosenEndpoint{tcp.rfind("tls://", 0) == 0 ? "tls" : "tcp", tcp};
}

}  // namespace

StatusOr<StartedMigration> start_migration(const MigrationCall& call) {
  const std::string& mode = call.mode;
  if (mode != "kv" && mode != "recompute" && mode != "auto")
    return invalid_argument("mode must be kv, recompute or auto, got '" + mode + "'");
  const std::string& transport = call.transport;
  if (transport != "tcp" && transport != "shm" && transport != "auto")
    return invalid_argument("transport must be tcp, shm or auto, got '" + transport + "'");
  if (call.max_rounds < 0) return invalid_argument("max_rounds must be >= 0, got " + std::to_string(call.max_rounds));
  const std::string& source = call.source;
  const std::string& target = call.target;
  const std::string& token = call.token;
  std::string id = call.id;
  if (id.empty()) {
    std::random_device rd;
    char buf[32];
    std::snprintf(buf, sizeof(buf), "mig-%08x", rd());
    id = buf;
  }
  // The source's node (shm when the target shares it), migration protocol and, for kv (which needs
  // the same weights; recompute may change them), its weights: the target refuses at once what it
  // could not take, before anything listens. A source of an older build says neither; the
  // snapshot's manifest is checked in any case.
  HOTSWAP_ASSIGN_OR_RETURN(json status, control_call(source, token, "GET", "/control/v1/status", json()));
  const std::string source_node_id = string_field(status, "node_id");
  json prepare = {{"id", id}, {"source", source}};
  if (mode == "kv" && status.contains("model_digest") && status["model_digest"].is_string())
    prepare["model_digest"] = status["model_digest"];
  if (status.contains("migration_protocol") && status["migration_protocol"].is_number_unsigned())
    prepare["protocol_version"] = status["migration_protocol"];
  HOTSWAP_ASSIGN_OR_RETURN(json prep, control_call(target, token, "POST", "/control/v1/migrations", prepare));
  auto chosen = choose_data_endpoint(transport, prep, source_node_id);
  if (!chosen.ok()) {
    // The target listens for a source that will not come: end that now rather than at its timeout.
    (void)control_call(target, token, "POST", "/control/v1/migrations/" + id + "/abort", json::object());
    return chosen.status();
  }
  json start = {{"data_endpoint", chosen->endpoint},
                {"target_url", target},
                {"mode", mode},
                {"downtime_budget_ms", call.downtime_budget_ms},
                {"max_rounds", call.max_rounds}};
  if (call.bandwidth_cap_bytes_per_s > 0) start["bandwidth_cap_bytes_per_s"] = call.bandwidth_cap_bytes_per_s;
  if (!call.sequences.empty()) start["sequences"] = call.sequences;
  auto started = control_call(source, token, "POST", "/control/v1/migrations/" + id + "/start", start);
  if (!started.ok()) {
    (void)control_call(target, token, "POST", "/control/v1/migrations/" + id + "/abort", json::object());
    return started.status();
  }
  return StartedMigration{id, chosen->transport};
}

StatusOr<json> migration_state(const std::string& source, const std::string& token, const std::string& id) {
  return control_call(source, token, "GET", "/control/v1/migrations/" + id, json());
}

StatusOr<json> run_migration(const MigrationCall& call) {
  auto t0 = std::chrono::steady_clock::now();
  HOTSWAP_ASSIGN_OR_RETURN(StartedMigration started, start_migration(call));
  json st;
  auto deadline = t0 + call.timeout;
  for (;;) {
    HOTSWAP_ASSIGN_OR_RETURN(st, migration_state(call.source, call.token, started.id));
    if (st["phase"] != "PreCopy" && st["phase"] != "Pending") break;
    if (std::chrono::steady_clock::now() > deadline)
      return unavailable("migration " + started.id + " still in " + st["phase"].get<std::string>() + " after " +
                         std::to_string(call.timeout.count()) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  st["total_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!st.contains("transport")) st["transport"] = started.transport;  // a source that does not say
  return st;
}

}  // namespace hotswap::agent
