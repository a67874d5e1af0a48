// hotswap-agent migrate: runs one migration between two agents through their control APIs
// (migration_client.h) and prints the result (phase, transport, rounds, bytes, link rate,
// downtime).
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/commands.h"
#include "agent/server/migration_client.h"
#include "common/flags.h"
#include "common/token_file.h"

namespace hotswap::agent {

using nlohmann::json;

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
  flags.add("max-rounds", "N", "pre-copy rounds at most (default 8; 0: stop-and-copy, all KV sent in the pause)");
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
  if (*rounds < 0 || *rounds > 1000) return fail(invalid_argument("--max-rounds must be in 0..1000"), 2);
  MigrationCall call;
  call.source = flags.get("source");
  call.target = flags.get("target");
  call.token = token;
  call.id = flags.get("id", "");
  call.mode = flags.get("mode", "kv");
  call.transport = flags.get("transport", "auto");
  call.downtime_budget_ms = *budget;
  call.max_rounds = static_cast<int>(*rounds);
  call.timeout = std::chrono::seconds(*timeout);
  for (const std::string* v : {&call.mode, &call.transport})
    if (v->empty()) return fail(invalid_argument("--mode and --transport take a value"), 2);
  if (call.mode != "kv" && call.mode != "recompute" && call.mode != "auto")
    return fail(invalid_argument("--mode must be kv, recompute or auto, got '" + call.mode + "'"), 2);
  if (call.transport != "tcp" && call.transport != "shm" && call.transport != "auto")
    return fail(invalid_argument("--transport must be tcp, shm or auto, got '" + call.transport + "'"), 2);
  auto result = run_migration(call);
  if (!result.ok()) return fail(result.status(), 1);
  json st = *result;
  const std::string id = st.value("id", call.id);
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
