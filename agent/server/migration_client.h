// One migration between two agents through their control APIs, as an operator runs it:
// prepare on the target, start on the source, follow the source until it switched or failed.
// Used by `hotswap-agent migrate`, the migration benchmark and hotswap-operator (which takes
// the steps one reconcile at a time: start_migration, then migration_state until it ends).
//
// The transport: the target offers tcp (tls:// when it holds TLS material, which the source then
// needs too) and, when it can, shm (data_endpoints); transport "tcp" takes the network endpoint
// whatever its scheme; "auto"
// takes shm when the target's node_id (in its prepare answer) equals the source's (in its GET
// /control/v1/status), so both agents say they run on one machine; the caller's own machine
// does not matter, it may run anywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::agent {

struct MigrationCall {
  std::string source, target;  // agents' base URLs, http://host:port
  std::string token;           // the control API's bearer token (both agents')
  std::string id;              // empty: a random one
  std::string mode = "kv";     // kv, recompute, auto
  std::string transport = "auto";  // tcp, shm, auto
  double downtime_budget_ms = 50;
  int max_rounds = 8;  // 0: stop-and-copy
  uint64_t bandwidth_cap_bytes_per_s = 0;  // 0: no cap
  std::vector<std::string> sequences;      // request ids to move; empty: all
  std::chrono::seconds timeout{120};
};

struct StartedMigration {
  std::string id;
  std::string transport;  // "tls", "tcp" (the network endpoint, encrypted or not) or "shm"
};

// Prepares the target and starts the source; the agents then run the migration between
// themselves. Errors: a bad call (kInvalidArgument), an agent that refused or did not answer
// (a target prepared for a source that then refused is aborted).
StatusOr<StartedMigration> start_migration(const MigrationCall& call);

// The source's GET /control/v1/migrations/{id}: phase (Pending, PreCopy, Draining, Completed,
// RolledBack, Failed), report, transfer. kNotFound when the source does not know the id.
StatusOr<nlohmann::json> migration_state(const std::string& source, const std::string& token, const std::string& id);

// The source's final GET /control/v1/migrations/{id} (phase Draining or Completed when it
// switched; RolledBack or Failed otherwise), with "total_ms" (prepare to the end) and
// "transport" added. Errors: a bad call (kInvalidArgument), an agent that refused or did not
// answer, or a migration still running at the timeout.
StatusOr<nlohmann::json> run_migration(const MigrationCall& call);

// One control API call: the JSON answer of a 200, else an error naming the call and the
// agent's message, coded by the HTTP status: 404 kNotFound, 400 kInvalidArgument, 401/403/409
// kFailedPrecondition, anything else (or no answer) kUnavailable.
StatusOr<nlohmann::json> control_call(const std::string& base, const std::string& token, const std::string& method,
                                      const std::string& path, const nlohmann::json& body,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace hotswap::agent
