#include "agent/server/response_sink.h"

#include "common/http.h"
#include "common/log.h"

namespace hotswap::agent {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

json ResponseState::to_json() const {
  return {{"endpoint", endpoint == Endpoint::kChatCompletions ? "chat" : "completions"},
          {"id", id},
          {"model", model},
          {"created", created},
          {"prompt_tokens", prompt_tokens},
          {"stream", stream},
          {"include_usage", include_usage},
          {"tokens", tokens},
          {"role_sent", role_sent},
          {"last_event_id", last_event_id}};
}

StatusOr<ResponseState> ResponseState::from_json(const json& j) {
  ResponseState s;
  try {
    s.endpoint = j.at("endpoint").get<std::string>() == "chat" ? Endpoint::kChatCompletions : Endpoint::kCompletions;
    s.id = j.at("id").get<std::string>();
    s.model = j.at("model").get<std::string>();
    s.created = j.at("created").get<int64_t>();
    s.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
    s.stream = j.at("stream").get<bool>();
    s.include_usage = j.at("include_usage").get<bool>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.role_sent = j.at("role_sent").get<bool>();
    s.last_event_id = j.at("last_event_id").get<int64_t>();
  } catch (const std::exception& e) {
    return invalid_argument(std::string("migrated request's response state: ") + e.what());
  }
  return s;
}

ResponseSink::ResponseSink(std::weak_ptr<SinkHost> host, web::http::http_request request, ResponseState state,
                           Clock::time_point arrival, std::shared_ptr<SseStream> sse)
    : host_(std::move(host)),
      request_(std::move(request)),
      state_(std::move(state)),
      arrival_(arrival),
      sse_(std::move(sse)) {}

void ResponseSink::start_stream() {
  std::weak_ptr<ResponseSink> self = shared_from_this();
  Status st = sse_->attach(request_, -1, [self] {
    if (auto s = self.lock()) s->client_gone();
  });
  if (!st.ok()) log_error("stream " + state_.id + ": " + st.to_string());
}

void ResponseSink::on_event(const engine::TokenEvent& ev) {
  auto now = Clock::now();
  auto host = host_.lock();
  std::lock_guard<std::mutex> lk(mu_);
  if (ev.token >= 0) {
    if (host) {
      if (tokens_.empty())
        host->sink_metrics().observe_time_to_first_token(std::chrono::duration<double>(now - arrival_).count());
      else
        host->sink_metrics().observe_inter_token(std::chrono::duration<double>(now - last_token_).count());
      host->sink_metrics().count_generated_tokens(1);
    }
    last_token_ = now;
    tokens_.push_back(ev.token);
    ++state_.tokens;
  }
  text_ += ev.text;
  if (ev.finish == engine::FinishReason::kAbort) {
    if (sse_) sse_->finish();
    return;
  }
  std::string finish = engine::finish_reason_name(ev.finish);
  if (!sse_) {
    if (ev.finish == engine::FinishReason::kNone || !host) return;
    CompletionResult r{state_.id, state_.created, state_.model, text_, tokens_, finish, state_.prompt_tokens};
    host->sink_metrics().count_request(endpoint_label(state_.endpoint), 200);
    host->track_reply(http::reply_json(request_, web::http::status_codes::OK, completion_response(state_.endpoint, r)));
    return;
  }
  std::vector<int32_t> ids;
  if (ev.token >= 0) ids.push_back(ev.token);
  sse_->append(
      stream_chunk(state_.endpoint, state_.id, state_.created, state_.model, ev.text, ids, finish, !state_.role_sent)
          .dump());
  state_.role_sent = true;
  if (ev.finish != engine::FinishReason::kNone) {
    if (state_.include_usage)
      sse_->append(
          usage_chunk(state_.endpoint, state_.id, state_.created, state_.model, state_.prompt_tokens, state_.tokens)
              .dump());
    sse_->append("[DONE]");
    sse_->finish();
  }
}

void ResponseSink::on_failure(const Status& status) {
  ApiError e = status_to_api_error(status);
  if (e.http_status < 500) e.http_status = 503;
  auto host = host_.lock();
  if (!sse_) {
    if (host) host->reply_error(request_, endpoint_label(state_.endpoint), e);
    return;
  }
  sse_->append(e.to_json().dump());
  sse_->append("[DONE]");
  sse_->finish();
}

void ResponseSink::on_abandoned() {
  if (sse_) {
    sse_->finish();  // the connection closes without [DONE]: the client resumes on the target
    return;
  }
  on_failure(unavailable("the agent relaying this request is shutting down; the request went on elsewhere"));
}

ResponseState ResponseSink::state() const {
  std::lock_guard<std::mutex> lk(mu_);
  ResponseState s = state_;
  if (sse_) s.last_event_id = sse_->next_event_id() - 1;
  return s;
}

void ResponseSink::client_gone() {
  sse_->finish();
  if (auto host = host_.lock()) host->cancel_request(state_.id);
}

}  // namespace hotswap::agent
