// One request's record, and the recorder that fills it from the bytes of a completion stream.
//
// The stream is the server's OpenAI-style SSE: events with consecutive ids 0, 1, 2, ...; each
// data is a JSON chunk whose choices[0] carries text (or delta.content for chat), token_ids
// and finish_reason; an error object may replace the chunk; the last event is "[DONE]".
// The recorder keeps every token with the time its event arrived, every id anomaly, and the
// first protocol error; it never stops reading on an error, so the counts are complete.
//
// A recorder is fed by one thread at a time (the caller serialises); it knows nothing of HTTP.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/sse_parser.h"
#include "e2e/loadgen/stream_stats.h"

namespace hotswap::loadgen {

using Clock = std::chrono::steady_clock;

// Why a request did not end well. For a request with several problems the first in this order
// wins: a transport failure hides what the stream would have shown.
enum class Outcome {
  kOk,
  kHttpStatus,       // the server answered with a status other than 200
  kTimeout,          // the per-request timeout passed
  kConnectionError,  // connect, send or read failed, or the body was cut mid-chunk
  kBadJson,          // a data line that is not a well-formed chunk (or not an event stream)
  kStreamError,      // the server sent an error object inside the stream
  kNoDone,           // the stream ended cleanly without "data: [DONE]"
  kEventIds,         // an id duplicated, skipped, out of order, absent or not a number
};

// "ok", "http_429", "timeout", "connection_error", "bad_json", "stream_error", "no_done",
// "event_ids": the key a report counts failures under.
std::string outcome_key(Outcome outcome, int http_status);

struct RequestResult {
  int64_t index = 0;
  int64_t seed = 0;
  Outcome outcome = Outcome::kOk;
  int http_status = 0;  // 0 when no response arrived
  std::string error;    // what went wrong, for a person; empty when ok
  std::optional<double> retry_after_s;

  std::string finish_reason;  // the last non-null finish_reason
  std::vector<int64_t> token_ids;
  std::string text;
  Clock::time_point sent{};                       // just before the request was handed to HTTP
  std::vector<Clock::time_point> token_arrivals;  // one per token id: when its event was read

  // A 200 body without chunked transfer coding: cpprest delivers such a body in pieces of up
  // to 64 KiB (or at close), so its token times are not arrival times.
  bool body_unchunked = false;
  int64_t events = 0;  // events with data, "[DONE]" included
  bool done = false;   // "[DONE]" arrived
  int64_t duplicate_ids = 0, missing_ids = 0, out_of_order_ids = 0;
  int64_t events_without_id = 0, bad_ids = 0, events_after_done = 0;

  bool ok() const { return outcome == Outcome::kOk; }
  int64_t id_anomalies() const {
    return duplicate_ids + missing_ids + out_of_order_ids + events_without_id + bad_ids + events_after_done;
  }
  // Request sent -> first token, in ms; none without tokens.
  std::optional<double> ttft_ms() const;
  // Arrival of each token, in ms since the request was sent.
  std::vector<double> token_times_ms() const;
  // Appends the gaps between consecutive tokens, in ms.
  void append_gaps_ms(std::vector<double>& out) const;
};

class CompletionStreamRecorder {
 public:
  static constexpr size_t kBodyPrefixBytes = 4096;

  explicit CompletionStreamRecorder(bool chat) : chat_(chat) {}

  // Takes the next bytes of the body, read from the socket at `arrival`.
  void on_bytes(std::string_view bytes, Clock::time_point arrival);

  // Copies what the stream showed into `result` (tokens, text, ids, finish reason) and sets
  // its outcome for a body that ended cleanly: kOk or the first of bad_json, stream_error,
  // no_done, event_ids.
  void finish(RequestResult& result) const;

  // The first bytes of the body, for an error response's message.
  const std::string& body_prefix() const { return body_prefix_; }

 private:
  void on_event(const SseEvent& event, Clock::time_point arrival);
  void on_chunk(std::string_view data, Clock::time_point arrival);
  void note_bad_json(std::string why);

  bool chat_;
  SseParser parser_;
  std::vector<SseEvent> events_;  // scratch, reused between feeds
  EventIdTracker ids_;
  std::string body_prefix_;

  RequestResult stream_;  // the stream fields only
  int64_t bad_json_ = 0;
  std::string bad_json_error_, stream_error_;
};

}  // namespace hotswap::loadgen
