// One request's way back to its client: a JSON reply at the end, or an SSE stream (sse_stream.h).
//
// Its state (ResponseState) travels with the request when it migrates (the snapshot's params),
// so the target formats the rest of the response exactly as the source would have: same ids,
// same event numbering, same usage counts.
//
// Threads: on_event/on_failure come from the engine thread, or from a StreamRelay's I/O thread
// after the request moved away; never both at once.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <cpprest/http_listener.h>
#include <nlohmann/json.hpp>

#include "agent/server/engine_service.h"
#include "agent/server/openai_protocol.h"
#include "agent/server/server_metrics.h"
#include "agent/server/sse_stream.h"

namespace hotswap::agent {

// What a sink needs from its server.
class SinkHost {
 public:
  virtual ~SinkHost() = default;
  virtual ServerMetrics& sink_metrics() = 0;
  virtual void track_reply(pplx::task<void> reply, std::function<void(bool ok)> done = nullptr) = 0;
  virtual void reply_error(const web::http::http_request& req, const std::string& endpoint, const ApiError& e) = 0;
  virtual void cancel_request(const std::string& request_id) = 0;
};

struct ResponseState {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id, model;
  int64_t created = 0;
  int64_t prompt_tokens = 0;
  bool stream = false, include_usage = false;
  int64_t tokens = 0;          // tokens sent so far (usage counts them)
  bool role_sent = false;      // chat: the first chunk (with the role) went out
  int64_t last_event_id = -1;  // the stream's last event id

  nlohmann::json to_json() const;
  static StatusOr<ResponseState> from_json(const nlohmann::json& j);
};

class ResponseSink : public RequestSink, public std::enable_shared_from_this<ResponseSink> {
 public:
  // request: the client's (may be a default one for a migrated request whose client is
  // elsewhere). sse: the stream for streamed requests, null for a whole response.
  ResponseSink(std::weak_ptr<SinkHost> host, web::http::http_request request, ResponseState state,
               std::chrono::steady_clock::time_point arrival, std::shared_ptr<SseStream> sse);

  // Attaches the client as the stream's consumer (events appended before are replayed).
  void start_stream();
  void on_event(const engine::TokenEvent& ev) override;
  void on_failure(const Status& status) override;
  void on_abandoned() override;

  // The state to travel with the request.
  ResponseState state() const;
  const std::string& id() const { return state_.id; }
  const std::shared_ptr<SseStream>& sse() const { return sse_; }

 private:
  void client_gone();

  std::weak_ptr<SinkHost> host_;
  web::http::http_request request_;
  ResponseState state_;
  std::chrono::steady_clock::time_point arrival_, last_token_;
  std::vector<int32_t> tokens_;  // the tokens this sink saw (a whole response lists them)
  std::string text_;
  std::shared_ptr<SseStream> sse_;
  mutable std::mutex mu_;  // state_ for state() from other threads
};

}  // namespace hotswap::agent
