// The runner: keeps `streams` streaming completion requests open against an OpenAI-compatible
// server until `requests` have been started or `duration_s` has passed, and records each one
// token by token.
//
// HTTP is cpprestsdk's http_client, but the response body bypasses cpprest's default
// producer_consumer_buffer: each request gets a write-only stream buffer (an arrival sink)
// into which cpprest's I/O thread writes every body chunk right after reading it from the
// socket; the sink takes the steady-clock time there and feeds the SSE recorder. A token's
// time is therefore the time its bytes came off the socket, with no task hop, polling or
// buffering in between. (Reading response.body() instead costs several task hops per event,
// and getn(n) on that buffer waits for n bytes unless the writer syncs.) Exact only for a
// chunked body, which is what an SSE server sends: cpprest reads any other body in pieces of
// up to 64 KiB; such streams are flagged (body_unchunked) rather than trusted.
//
// Threads: run_load() starts `streams` worker threads and joins them before it returns. A
// worker owns the requests it runs: it sends one, waits for the headers and then for the end
// of the body (each wait bounded by the request's deadline), records the result and claims
// the next index. cpprest's I/O threads touch only a request's sink, under the sink's mutex; a
// worker that gives up on a request cancels it (cpprest closes the connection) and detaches
// the sink, so late bytes are dropped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "e2e/loadgen/stream_recorder.h"

namespace hotswap::loadgen {

struct LoadgenConfig {
  std::string url;  // the server's base URL, e.g. http://127.0.0.1:8000
  int streams = 1;  // requests open at a time
  int64_t requests = 1;
  int64_t max_tokens = 32;
  int64_t seed = 0;       // request i is sent with seed + i
  double duration_s = 0;  // no request starts after this many seconds; 0: no limit
  std::string model;      // empty: the first id of GET /v1/models
  int64_t prompt_words = 16;
  std::vector<int64_t> prompt_ids;  // non-empty: every request's prompt is these token ids (completions only)
  double temperature = 0;
  bool chat = false;               // /v1/chat/completions instead of /v1/completions
  bool ignore_eos = false;         // sends "ignore_eos": true (hotswap's and vLLM's extension)
  double request_timeout_s = 120;  // from sending a request to the end of its stream
};

// A deterministic prompt of `words` words, a function of (seed, index) only.
std::string make_prompt(int64_t seed, int64_t index, int64_t words);

// The JSON body of request `index`.
nlohmann::json make_request_body(const LoadgenConfig& config, const std::string& model, int64_t index);

// "/v1/completions" or "/v1/chat/completions".
std::string request_path(const LoadgenConfig& config);

// The first model id of GET {url}/v1/models.
StatusOr<std::string> fetch_first_model_id(const std::string& url, double timeout_s);

struct LoadRun {
  std::string model;
  int64_t planned = 0;                  // config.requests
  std::vector<RequestResult> requests;  // the started ones, by index
  double wall_s = 0;                    // from starting the workers (model lookup done) to the last end
  bool stopped_by_duration = false;     // duration_s passed before all were started
};

// Runs the load. Errors: a bad URL (kInvalidArgument), no model to name (kUnavailable).
// Failed requests are not errors; they are in the run.
StatusOr<LoadRun> run_load(const LoadgenConfig& config);

}  // namespace hotswap::loadgen
