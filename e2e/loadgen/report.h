// The load generator's report: totals over a run, as text for a person or as one JSON object
// for a program (per request: tokens, text, ids, times, so two runs compare token by token).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "e2e/loadgen/loadgen.h"
#include "e2e/loadgen/stream_stats.h"

namespace hotswap::loadgen {

struct LoadSummary {
  int64_t planned = 0, started = 0, ok = 0, failed = 0;
  std::map<std::string, int64_t> failures;  // outcome_key -> requests
  int64_t tokens = 0, events = 0;
  int64_t duplicate_ids = 0, missing_ids = 0, out_of_order_ids = 0;
  int64_t events_without_id = 0, bad_ids = 0, events_after_done = 0;
  int64_t bodies_unchunked = 0;
  LatencySummary ttft_ms;         // request sent -> first token, over requests with a token
  LatencySummary inter_token_ms;  // gaps between consecutive tokens of a request, over all
  double wall_s = 0, tokens_per_s = 0;
};

LoadSummary summarize_run(const LoadRun& run);

nlohmann::json report_json(const LoadgenConfig& config, const LoadRun& run, const LoadSummary& summary);
std::string report_text(const LoadgenConfig& config, const LoadRun& run, const LoadSummary& summary);

// 0 when at least one request ran and every one was ok, else 1.
int exit_code(const LoadSummary& summary);

}  // namespace hotswap::loadgen
