// The two ends of one migration, over a transport (transport.h), driving the engines through
// a callback that runs code on each engine's thread (EngineService::run_on_engine).
//
// Source (run_source): sends the Manifest, then pre-copy rounds while the sequences keep
// decoding — each round sends every migrating sequence's state and the KV blocks written since
// they were last sent (a sequence's KV is append-only, so only its tail block and new blocks
// are dirty; a preempted sequence, whose cache was dropped, starts over) — until what is left
// to send fits the downtime budget at the measured link rate, the round limit is reached, or
// the dirty set stops shrinking. Then the switch, in one engine call: the sequences' last state
// and dirty blocks are read and they leave the engine (their sinks go to the caller); queued
// requests leave with them. The rest is sent, then End, and the target's reply is awaited.
// Any failure before the target confirmed puts the sequences back into the source engine (as
// recomputes: exact, since the future depends only on the state) and returns the error.
//
// Target (run_target): stages the KV of each sequence as it arrives (later copies replace
// earlier ones), and at End imports every sequence into its engine in one engine call (with its
// KV, or as a recompute when there is no room or no KV), hands each to the caller (to give it a
// sink), and replies {"switched": true, ...} — or {"error": ...} having imported nothing. Then
// it waits for the source's last word: a source that gave up on the switch before the reply
// reached it (its deadline passed) sends ABORT, and the target drops what it imported, which
// would reach no client; the source's close keeps them.
//
// Modes: kv (pre-copy), recompute (no KV travels; the target prefills prompt + generated),
// auto (the cheaper of the two by the measured link rate and the engine's prefill rate).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/engine/engine.h"
#include "agent/migration/transport.h"
#include "common/status.h"

namespace hotswap::migration {

// Runs fn on the engine's thread and returns its Status (EngineService::run_on_engine).
using EngineCall = std::function<Status(const std::function<Status(engine::Engine&)>&)>;

enum class MigrationMode { kKv, kRecompute, kAuto };
const char* migration_mode_name(MigrationMode m);  // "kv", "recompute", "auto"
StatusOr<MigrationMode> parse_migration_mode(const std::string& name);

struct SourcePlan {
  std::string migration_id;
  std::string source;  // who we are, for the manifest
  std::string model_digest;
  std::string architecture;
  kernels::DType weight_dtype = kernels::DType::kBF16;
  MigrationMode mode = MigrationMode::kKv;
  std::vector<std::string> request_ids;  // empty: every sequence and queued request
  double downtime_budget_ms = 50;
  int max_rounds = 8;  // pre-copy rounds at most; 0: stop-and-copy (all KV sent in the pause)
  // Pre-copy reads at most this much KV per engine call (at least one block): a round over a long
  // context stalls decoding for one slice's copy at a time, not for the whole cache, and each
  // slice is on the wire while the next is read.
  int64_t precopy_slice_bytes = 4 << 20;
  double prefill_tokens_per_s = 0;           // for auto; 0: assume recompute is slower than any link
  std::chrono::milliseconds timeout{30000};  // per transport wait
  // The switch at most, from the pause to the target's reply: past it the source rolls back
  // and its clients' streams go on here. 0: max(2 s, 40 x downtime_budget_ms).
  std::chrono::milliseconds switch_timeout{0};
};

// The switch deadline a plan stands for (switch_timeout, or its default).
std::chrono::milliseconds effective_switch_timeout(const SourcePlan& plan);

struct SourceHooks {
  // Inside the switch's engine call, once the sequences left the engine: take their sinks.
  std::function<void(const std::vector<std::string>& request_ids)> on_detached;
  // Inside an engine call: the server's stream state for a request (stored as params).
  std::function<nlohmann::json(const std::string& request_id)> params;
  // Inside an engine call, after a failed switch put the sequences back: give their sinks back.
  std::function<void(const std::vector<std::string>& request_ids)> on_restored;
};

struct RoundReport {
  int64_t sequences = 0, blocks = 0, bytes = 0;
  double seconds = 0;
};

struct MigrationReport {
  std::string result;       // "switched", "rolled_back", "failed"
  std::string mode;         // the mode used ("kv" or "recompute" once auto decided)
  std::string precopy_end;  // why pre-copy stopped: "budget", "round_limit", "not_converging", "none"
  std::vector<RoundReport> rounds;
  int64_t sequences = 0, queued = 0, recomputed = 0;
  int64_t bytes = 0;
  double link_bytes_per_s = 0;
  double prefill_tokens_per_s = 0;   // what auto weighed recomputing with (the plan's)
  double estimated_downtime_ms = 0;  // the last dirty set at the link rate, before the switch
  double switch_ms = 0;              // from the pause until the target confirmed
  // Target, another block size than the source's: the most KV held in host memory at once, and
  // the cap it stays under (the target's pool size; a sequence beyond it is recomputed).
  uint64_t host_staged_bytes_peak = 0, host_staging_cap_bytes = 0;
  std::string error;
  nlohmann::json to_json() const;
};

StatusOr<MigrationReport> run_source(const SourcePlan& plan, ChunkSender& sender, const EngineCall& engine,
                                     const SourceHooks& hooks);

struct TargetPlan {
  std::string model_digest;  // ours; the manifest must match it
  std::chrono::milliseconds timeout{30000};
};

struct TargetHooks {
  // Inside the import's engine call: a sequence was imported; give it its sink.
  std::function<void(const engine::SequenceSnapshot& snapshot, const nlohmann::json& params)> on_imported;
  // Inside an engine call, after the source gave up on the switch: these imported sequences left
  // the engine (those that finished already are among them); take their sinks back.
  std::function<void(const std::vector<std::string>& request_ids)> on_dropped;
};

StatusOr<MigrationReport> run_target(const TargetPlan& plan, ChunkReceiver& receiver, const EngineCall& engine,
                                     const TargetHooks& hooks);

// Conversions between the wire's SequenceState and the engine's SequenceSnapshot.
SequenceState to_sequence_state(const engine::SequenceSnapshot& s, const nlohmann::json& params, int64_t position,
                                int64_t kv_blocks);
engine::SequenceSnapshot to_engine_snapshot(const SequenceState& s);

}  // namespace hotswap::migration
