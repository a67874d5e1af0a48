#include "agent/server/stream_relay.h"

#include <cpprest/http_client.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/http_body_sink.h"
#include "common/sse_parser.h"

namespace hotswap::agent {

using nlohmann::json;

namespace {

engine::FinishReason parse_finish(const json& v) {
  if (!v.is_string()) return engine::FinishReason::kNone;
  const std::string s = v.get<std::string>();
  if (s == "stop") return engine::FinishReason::kStop;
  if (s == "length") return engine::FinishReason::kLength;
  return engine::FinishReason::kAbort;
}

}  // namespace

class StreamRelay::Impl : public http::BodySink {
 public:
  Impl(StreamRelayOptions options, std::shared_ptr<RequestSink> sink, std::function<void(const Status&)> done)
      : options_(std::move(options)),
        sink_(std::move(sink)),
        done_(std::move(done)),
        next_index_(options_.first_index) {}

  void begin(const std::shared_ptr<Impl>& self) {
    web::http::client::http_client_config config;
    config.set_timeout(std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout));
    try {
      client_ = std::make_unique<web::http::client::http_client>(options_.url, config);
      web::http::http_request request(web::http::methods::GET);
      request.set_request_uri("/v1/streams/" + web::uri::encode_data_string(options_.request_id));
      if (options_.last_event_id >= 0) request.headers().add("Last-Event-ID", std::to_string(options_.last_event_id));
      request.set_response_stream(concurrency::streams::streambuf<uint8_t>(self).create_ostream());
      client_->request(request, cancel_.get_token())
          .then([self](web::http::http_response response) {
            if (response.status_code() != web::http::status_codes::OK) {
              throw std::runtime_error("the stream answered HTTP " + std::to_string(response.status_code()));
            }
            return response.content_ready();
          })
          .then([self](pplx::task<web::http::http_response> t) {
            try {
              t.get();
              self->end(self->finished_
                            ? Status()
                            : unavailable("stream '" + self->options_.request_id + "' ended before it finished"));
            } catch (const std::exception& e) {
              self->end(unavailable("relay of stream '" + self->options_.request_id + "' from " + self->options_.url +
                                    ": " + e.what()));
            }
          });
    } catch (const std::exception& e) {
      end(invalid_argument("relay of stream '" + options_.request_id + "': " + e.what()));
    }
  }

  // Takes no lock: it may run inside on_bytes on the same thread (a sink's event can release
  // the last reference to a server, whose shutdown cancels its relays).
  void cancel() {
    abandoned_.store(true);
    cancel_.cancel();
  }

 protected:
  void on_bytes(const uint8_t* data, size_t n, Clock::time_point) override {
    std::vector<SseEvent> events;
    std::lock_guard<std::mutex> lk(mu_);
    if (ended_) return;
    Status st = parser_.feed(std::string_view(reinterpret_cast<const char*>(data), n), events);
    if (!st.ok()) {
      failure_ = st;
      cancel_.cancel();
      return;
    }
    for (const auto& ev : events) {
      if (ev.data == "[DONE]") continue;
      json j = json::parse(ev.data, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) {
        failure_ = data_loss("stream '" + options_.request_id + "': event " + ev.id + " is not JSON");
        cancel_.cancel();
        return;
      }
      if (j.contains("error")) {
        failure_ = unavailable("stream '" + options_.request_id + "' failed on " + options_.url + ": " +
                               j["error"].value("message", std::string("unknown error")));
        cancel_.cancel();
        return;
      }
      if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;  // usage
      const json& c = j["choices"][0];
      std::string text = c.contains("text") && c["text"].is_string()     ? c["text"].get<std::string>()
                         : c.contains("delta") && c["delta"].is_object() ? c["delta"].value("content", std::string())
                                                                         : std::string();
      engine::FinishReason finish = parse_finish(c.value("finish_reason", json()));
      std::vector<int32_t> tokens;
      if (c.contains("token_ids") && c["token_ids"].is_array())
        for (const auto& t : c["token_ids"]) tokens.push_back(t.get<int32_t>());
      // One engine event per token; the chunk's text and finish ride on its first / last token.
      size_t n_events = std::max<size_t>(1, tokens.size());
      for (size_t i = 0; i < n_events; ++i) {
        engine::TokenEvent e;
        e.request_id = options_.request_id;
        if (i < tokens.size()) {
          e.token = tokens[i];
          e.index = next_index_++;
        }
        if (i == 0) e.text = text;
        if (i + 1 == n_events) e.finish = finish;
        sink_->on_event(e);
      }
      if (finish != engine::FinishReason::kNone) finished_ = true;
    }
  }

 private:
  void end(Status st) {
    std::lock_guard<std::mutex> lk(mu_);
    if (ended_) return;
    ended_ = true;
    if (!failure_.ok()) st = failure_;
    if (abandoned_ && !finished_) {
      sink_->on_abandoned();
      st = unavailable("relay of stream '" + options_.request_id + "' cancelled here");
    } else if (!st.ok() && !finished_) {
      sink_->on_failure(st);
    }
    if (done_) done_(st);
  }

  StreamRelayOptions options_;
  std::shared_ptr<RequestSink> sink_;
  std::function<void(const Status&)> done_;
  std::unique_ptr<web::http::client::http_client> client_;
  pplx::cancellation_token_source cancel_;
  std::mutex mu_;
  SseParser parser_;
  int64_t next_index_;
  bool finished_ = false, ended_ = false;
  std::atomic<bool> abandoned_{false};
  Status failure_;
};

std::shared_ptr<StreamRelay> StreamRelay::start(const StreamRelayOptions& options, std::shared_ptr<RequestSink> sink,
                                                std::function<void(const Status&)> done) {
  auto impl = std::make_shared<Impl>(options, std::move(sink), std::move(done));
  impl->begin(impl);
  return std::shared_ptr<StreamRelay>(new StreamRelay(impl));
}

void StreamRelay::cancel() {
  impl_->cancel();
}

}  // namespace hotswap::agent
