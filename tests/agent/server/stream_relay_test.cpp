// The relay: another agent's stream, continued into a local sink.
#include "agent/server/stream_relay.h"

#include <gtest/gtest.h>

#include <future>

#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

using nlohmann::json;

class RecordingSink : public RequestSink {
 public:
  void on_event(const engine::TokenEvent& ev) override {
    std::lock_guard<std::mutex> lk(mu);
    if (ev.token >= 0) {
      indices.push_back(ev.index);
      tokens.push_back(ev.token);
    }
    text += ev.text;
    if (ev.finish != engine::FinishReason::kNone) finish = ev.finish;
  }
  void on_failure(const Status& st) override {
    std::lock_guard<std::mutex> lk(mu);
    failure = st.to_string();
  }
  std::mutex mu;
  std::vector<int64_t> indices;
  std::vector<int32_t> tokens;
  std::string text, failure;
  engine::FinishReason finish = engine::FinishReason::kNone;
};

Status run_relay(const StreamRelayOptions& o, std::shared_ptr<RequestSink> sink) {
  auto done = std::make_shared<std::promise<Status>>();
  auto fut = done->get_future();
  auto relay = StreamRelay::start(o, sink, [done](const Status& st) { done->set_value(st); });
  if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    relay->cancel();
    return unavailable("relay did not finish");
  }
  return fut.get();
}

TEST(StreamRelay, ContinuesAStreamFromAnEventIdIntoALocalSink) {
  testing::TestServer ts;
  json body = {{"model", "tiny"},  {"prompt", "relay this"}, {"max_tokens", 20},
               {"temperature", 0}, {"ignore_eos", true},     {"stream", true}};
  auto full = testing::http_call(ts.port, "POST", "/v1/completions", body.dump());
  ASSERT_EQ(full.status, 200);
  std::string text;
  auto tokens = testing::stream_tokens(full.body, &text);
  ASSERT_EQ(tokens.size(), 20u);
  std::string id = json::parse(testing::parse_sse(full.body)[0].second)["id"];

  // Events 0..4 carried tokens 0..4; the relay picks up from there.
  auto sink = std::make_shared<RecordingSink>();
  StreamRelayOptions o;
  o.url = ts.server->url();
  o.request_id = id;
  o.last_event_id = 4;
  o.first_index = 5;
  Status st = run_relay(o, sink);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(sink->tokens, std::vector<int32_t>(tokens.begin() + 5, tokens.end()));
  ASSERT_EQ(sink->indices.size(), 15u);
  EXPECT_EQ(sink->indices.front(), 5);
  EXPECT_EQ(sink->indices.back(), 19);
  EXPECT_EQ(sink->finish, engine::FinishReason::kLength);
  EXPECT_TRUE(sink->failure.empty());
  EXPECT_EQ(text.substr(text.size() - sink->text.size()), sink->text);
}

TEST(StreamRelay, AMissingStreamFailsTheSink) {
  testing::TestServer ts;
  auto sink = std::make_shared<RecordingSink>();
  StreamRelayOptions o;
  o.url = ts.server->url();
  o.request_id = "cmpl-nowhere";
  Status st = run_relay(o, sink);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("404"), std::string::npos) << st.message();
  EXPECT_NE(sink->failure.find("404"), std::string::npos);
}

TEST(StreamRelay, AnUnreachableAgentFailsTheSink) {
  auto sink = std::make_shared<RecordingSink>();
  StreamRelayOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(http::pick_free_port().value());
  o.request_id = "x";
  Status st = run_relay(o, sink);
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(sink->failure.empty());
}

}  // namespace
}  // namespace hotswap::agent
