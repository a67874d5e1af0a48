// Resuming a stream with Last-Event-ID: nothing lost, nothing repeated.
#include <gtest/gtest.h>

#include <thread>

#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

using nlohmann::json;
using testing::http_call;
using testing::HttpConnection;
using testing::HttpResponse;
using testing::parse_sse;

std::string stream_body(const std::string& prompt, int max_tokens) {
  return json{{"model", "tiny"},  {"prompt", prompt},   {"max_tokens", max_tokens},
              {"temperature", 0}, {"ignore_eos", true}, {"stream", true}}
      .dump();
}

std::string request_id_of(const std::string& body) {
  auto events = parse_sse(body);
  return json::parse(events.at(0).second)["id"].get<std::string>();
}

TEST(StreamResume, FinishedStreamReplaysEverythingAfterLastEventId) {
  testing::TestServer ts;
  HttpResponse full = http_call(ts.port, "POST", "/v1/completions", stream_body("resume me", 12));
  ASSERT_EQ(full.status, 200);
  auto events = parse_sse(full.body);
  ASSERT_EQ(events.size(), 13u);  // 12 tokens + [DONE]
  std::string id = request_id_of(full.body);

  HttpResponse tail = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "5"}});
  ASSERT_EQ(tail.status, 200) << tail.body;
  auto resumed = parse_sse(tail.body);
  ASSERT_EQ(resumed.size(), events.size() - 6);
  for (size_t i = 0; i < resumed.size(); ++i) EXPECT_EQ(resumed[i], events[i + 6]);

  HttpResponse all = http_call(ts.port, "GET", "/v1/streams/" + id);
  EXPECT_EQ(parse_sse(all.body), events);
  HttpResponse last = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "12"}});
  EXPECT_EQ(last.status, 200);
  EXPECT_TRUE(parse_sse(last.body).empty());
}

TEST(StreamResume, BadResumptionsAreRefusedAndNamed) {
  testing::TestServer ts(engine::EngineOptions{}, 256, std::chrono::milliseconds(100), /*resume_log_events=*/4);
  HttpResponse full = http_call(ts.port, "POST", "/v1/completions", stream_body("short log", 10));
  std::string id = request_id_of(full.body);
  EXPECT_EQ(http_call(ts.port, "GET", "/v1/streams/no-such-stream").status, 404);
  HttpResponse beyond = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "99"}});
  EXPECT_EQ(beyond.status, 400);
  EXPECT_EQ(json::parse(beyond.body)["error"]["param"], "Last-Event-ID");
  HttpResponse junk = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "x1"}});
  EXPECT_EQ(junk.status, 400);
  // Only the last 4 events are held: resuming after event 1 would need 2..10.
  HttpResponse gone = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "1"}});
  EXPECT_EQ(gone.status, 410) << gone.body;
  EXPECT_EQ(json::parse(gone.body)["error"]["code"], "events_gone");
  HttpResponse ok = http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", "7"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(parse_sse(ok.body).size(), 3u);  // 8, 9 and [DONE] as 10
}

TEST(StreamResume, AReconnectingClientTakesOverALiveStreamWithoutLossOrRepeat) {
  engine::EngineOptions eo;
  eo.threads = 1;
  testing::TestServer ts(eo);
  const int tokens = 1500;
  HttpConnection first(ts.port);
  ASSERT_TRUE(first.send_request("POST", "/v1/completions", stream_body("take over", tokens)));
  HttpResponse head;
  ASSERT_TRUE(first.read_head(&head));
  std::string seen;
  while (parse_sse(seen).size() < 3) {
    auto piece = first.read_body_piece();
    ASSERT_TRUE(piece.has_value());
    seen += *piece;
  }
  // Cut at an event boundary, as a client that lost its connection would have it.
  seen = seen.substr(0, seen.rfind("\n\n") + 2);
  auto before = parse_sse(seen);
  std::string id = request_id_of(seen);
  HttpResponse rest =
      http_call(ts.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", std::to_string(before.back().first)}});
  ASSERT_EQ(rest.status, 200);
  // The first connection was ended cleanly (it is no longer the consumer) ...
  first.read_all_body();
  // ... and the two halves make the whole stream: ids 0..tokens, each once, tokens exact.
  std::string whole = seen + rest.body;
  std::vector<int32_t> got = testing::stream_tokens(whole);
  ASSERT_EQ(got.size(), static_cast<size_t>(tokens));
  auto want = testing::reference_tokens(ts.model, ts.model->tokenizer().encode("take over"), tokens, 0.0f, 0);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hotswap::agent
