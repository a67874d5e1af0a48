// hotswap-agent migrate: runs one migration between two agents through their control APIs —
// prepare on the target, start on the source, follow it until it switched or failed — and
// prints the result (phase, transport, rounds, bytes, link rate, downtime).
//
// The transport: the target offers tcp and, when it can, shm (data_endpoints); --transport auto
// takes shm when the target's node_id (in its prepare answer) equals the source's (in its GET
// /control/v1/status), so both agents say they run on one machine; the CLI's own machine does
// not matter, it may run anywhere.
#include <cpprest/http_client.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "agent/cli/commands.h"
#include "common/flags.h"
#include "common/token_file.h"

namespace hotswap::agent {

namespace {

using nlohmann::json;

StatusOr<json> control_call(const std::string& base, const std::string& token, const std::string& method,
                            const std::string& path, const json& body) {
  try {
    web::http::client::http_client_config config;
    config.set_timeout(std::chrono::seconds(30));
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
      return unavailable(method + " " + base + path + ": HTTP " + std::to_string(resp.status_code()) + ": " + msg);
    }
    if (j.is_discarded()) return data_loss(method + " " + base + path + ": the answer is not JSON");
    return j;
  } catch (const std::exception& e) {
    return unavailable(method + " " + base + path + ": " + e.what());
  }
}

std::string string_field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

struct ChosenEndpoint {
  std::string transport;  // "tcp" or "shm"
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
  return ChosenEndpoint{"tcp", tcp};
}

}  // namespace

int run_migrate(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-agent migrate --source URL --target URL --token-file F [--mode kv|recompute|auto]\n"
      "                             [--transport tcp|shm|auto] [--downtime-budget-ms N] [--id ID]\n"
      "                             [--timeout-s S] [--json]");
  flags.add("source", "URL", "the agent the sequences leave, http://host:port");
  flags.add("target", "URL", "the agent they move to");
  flags.add("token-file", "F", "the control API's bearer token (both agents')");
  flags.add("mode", "MODE", "kv (pre-copy, default), recompute, or auto");
  flags.add("transport", "T",
            "tcp, shm (same node: shared memory) or auto (default: shm when both agents report the same node_id, "
            "else tcp)");
  flags.add("downtime-budget-ms", "N", "pre-copy stops when the rest fits this (default 50)");
  flags.add("max-rounds", "N", "pre-copy rounds at most (default 8)");
  flags.add("id", "ID", "migration id (default: a random one)");
  flags.add("timeout-s", "S", "give up following it after S seconds (default 120)");
  flags.add("json", "", "print the result as one JSON object");
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st, int code) {
    std::fprintf(stderr, "migrate: %s\n", st.to_string().c_str());
    return code;
  };
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st, 2);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  for (const char* f : {"source", "target", "token-file"})
    if (!flags.has(f)) return fail(invalid_argument(std::string("--") + f + " is required"), 2);
  auto token_or = read_token_file(flags.get("token-file"), "--token-file");
  if (!token_or.ok()) return fail(token_or.status(), 2);
  const std::string token = *token_or;
  auto budget = flags.get_double("downtime-budget-ms", 50);
  auto rounds = flags.get_int("max-rounds", 8);
  auto timeout = flags.get_int("timeout-s", 120);
  for (const Status& st : {budget.status(), rounds.status(), timeout.status()})
    if (!st.ok()) return fail(st, 2);
  std::string mode = flags.get("mode", "kv");
  if (mode != "kv" && mode != "recompute" && mode != "auto")
    return fail(invalid_argument("--mode must be kv, recompute or auto, got '" + mode + "'"), 2);
  const std::string transport = flags.get("transport", "auto");
  if (transport != "tcp" && transport != "shm" && transport != "auto")
    return fail(invalid_argument("--transport must be tcp, shm or auto, got '" + transport + "'"), 2);
  std::string id = flags.get("id", "");
  if (id.empty()) {
    std::random_device rd;
    char buf[32];
    std::snprintf(buf, sizeof(buf), "mig-%08x", rd());
    id = buf;
  }
  const std::string source = flags.get("source"), target = flags.get("target");
  auto t0 = std::chrono::steady_clock::now();
  std::string source_node_id;
  if (transport == "auto") {
    auto status = control_call(source, token, "GET", "/control/v1/status", json());
    if (!status.ok()) return fail(status.status(), 1);
    source_node_id = string_field(*status, "node_id");
  }
  auto prep = control_call(target, token, "POST", "/control/v1/migrations", json{{"id", id}, {"source", source}});
  if (!prep.ok()) return fail(prep.status(), 1);
  auto chosen = choose_data_endpoint(transport, *prep, source_node_id);
  if (!chosen.ok()) {
    // The target listens for a source that will not come: end that now rather than at its timeout.
    (void)control_call(target, token, "POST", "/control/v1/migrations/" + id + "/abort", json::object());
    return fail(chosen.status(), 1);
  }
  auto start = control_call(source, token, "POST", "/control/v1/migrations/" + id + "/start",
                            json{{"data_endpoint", chosen->endpoint},
                                 {"target_url", target},
                                 {"mode", mode},
                                 {"downtime_budget_ms", *budget},
                                 {"max_rounds", *rounds}});
  if (!start.ok()) return fail(start.status(), 1);
  json st;
  auto deadline = t0 + std::chrono::seconds(*timeout);
  for (;;) {
    auto got = control_call(source, token, "GET", "/control/v1/migrations/" + id, json());
    if (!got.ok()) return fail(got.status(), 1);
    st = *got;
    if (st["phase"] != "PreCopy" && st["phase"] != "Pending") break;
    if (std::chrono::steady_clock::now() > deadline)
      return fail(unavailable("migration " + id + " still in " + st["phase"].get<std::string>() + " after " +
                              std::to_string(*timeout) + " s"),
                  1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  st["total_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!st.contains("transport")) st["transport"] = chosen->transport;  // a source that does not say
  const bool ok = st["phase"] == "Draining" || st["phase"] == "Completed";
  if (flags.has("json")) {
    std::printf("%s\n", st.dump().c_str());
  } else {
    const json& r = st["report"];
    std::printf("migration %s: %s over %s", id.c_str(), st["phase"].get<std::string>().c_str(),
                st["transport"].get<std::string>().c_str());
    if (r.is_object() && r.contains("mode"))
      std::printf(
          " (mode %s, %zu pre-copy rounds, %lld bytes, link %.1f MB/s, switch %.2f ms, %lld sequences, "
          "%lld queued)",
          r.value("mode", std::string()).c_str(), r["rounds"].size(),
          static_cast<long long>(r.value("bytes", int64_t{0})), r.value("link_bytes_per_s", 0.0) / 1e6,
          r.value("switch_ms", 0.0), static_cast<long long>(r.value("sequences", int64_t{0})),
          static_cast<long long>(r.value("queued", int64_t{0})));
    if (st.contains("error")) std::printf(": %s", st["error"].get<std::string>().c_str());
    std::printf("\n");
  }
  return ok ? 0 : 1;
}

}  // namespace hotswap::agent
