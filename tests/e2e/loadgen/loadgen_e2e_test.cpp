// hotswap-loadgen's runner against an in-process fake server on loopback: the report's counts
// must be exact, and token times must be arrival times.
#include <gtest/gtest.h>

#include <set>

#include "common/http.h"
#include "e2e/loadgen/loadgen.h"
#include "e2e/loadgen/report.h"
#include "tests/e2e/loadgen/fake_sse_server.h"

namespace hotswap::loadgen {
namespace {

using fake::chat_chunk;
using fake::completion_chunk;
using fake::FakeSseServer;
using fake::Script;
using fake::ScriptPiece;
using fake::sse;
using std::chrono::milliseconds;

constexpr int64_t kSeed = 100;

const std::string kUsageChunk =
    R"({"id":"cmpl-test","object":"text_completion","created":1,"model":"fake-model","choices":[],)"
    R"("usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}})";

// Tokens of request i: 10i+1 .. 10i+4, texts "<i>a" .. "<i>d".
int64_t token(int64_t i, int k) {
  return 10 * i + k + 1;
}
std::string piece_text(int64_t i, int k) {
  return std::to_string(i) + static_cast<char>('a' + k);
}

// The events of a clean stream of 4 tokens: 4 token chunks, a finish chunk without tokens, the
// usage chunk, [DONE]; ids 0..6.
std::vector<std::string> clean_events(int64_t i, bool chat = false) {
  std::vector<std::string> data;
  for (int k = 0; k < 4; ++k)
    data.push_back(chat ? chat_chunk(piece_text(i, k), {token(i, k)})
                        : completion_chunk(piece_text(i, k), {token(i, k)}));
  data.push_back(chat ? chat_chunk("", {}, "length") : completion_chunk("", {}, "length"));
  data.push_back(kUsageChunk);
  data.push_back("[DONE]");
  std::vector<std::string> events;
  for (size_t id = 0; id < data.size(); ++id) events.push_back(sse(static_cast<int64_t>(id), data[id]));
  return events;
}

Script stream_of(const std::vector<std::string>& events, milliseconds delay = milliseconds(0)) {
  Script s;
  for (const auto& e : events) s.pieces.push_back({delay, e});
  return s;
}

int64_t index_of(const nlohmann::json& request) {
  return request.at("seed").get<int64_t>() - kSeed;
}

LoadgenConfig config_for(const FakeSseServer& server, int streams, int64_t requests) {
  LoadgenConfig c;
  c.url = server.url();
  c.streams = streams;
  c.requests = requests;
  c.max_tokens = 4;
  c.seed = kSeed;
  c.prompt_words = 5;
  c.request_timeout_s = 10;
  return c;
}

TEST(LoadgenEndToEnd, ReportCountsEveryFailureKindExactly) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    const int64_t i = index_of(req);
    std::vector<std::string> events = clean_events(i);
    switch (i) {
      case 2: {  // event 1 sent twice, same token both times
        events.insert(events.begin() + 2, events[1]);
        return stream_of(events);
      }
      case 3:  // event 2 never sent
        events.erase(events.begin() + 2);
        return stream_of(events);
      case 4:  // the stream ends cleanly before [DONE]
        events.pop_back();
        events.pop_back();
        return stream_of(events);
      case 5: {
        Script s;
        s.status = 429;
        s.content_type = "application/json";
        s.headers = {{"Retry-After", "7"}};
        s.body = R"({"error":{"message":"too many requests","type":"rate_limit","param":null,"code":null}})";
        return s;
      }
      default:
        return stream_of(events);
    }
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 3, 6);

  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->model, "fake-model");  // from GET /v1/models
  ASSERT_EQ(run->requests.size(), 6u);
  LoadSummary s = summarize_run(*run);

  EXPECT_EQ(s.started, 6);
  EXPECT_EQ(s.ok, 2);
  EXPECT_EQ(s.failed, 4);
  EXPECT_EQ(s.failures, (std::map<std::string, int64_t>{{"event_ids", 2}, {"no_done", 1}, {"http_429", 1}}));
  EXPECT_EQ(s.tokens, 4 + 4 + 5 + 3 + 4 + 0);
  EXPECT_EQ(s.duplicate_ids, 1);
  EXPECT_EQ(s.missing_ids, 1);
  EXPECT_EQ(s.out_of_order_ids, 0);
  EXPECT_EQ(s.events_without_id, 0);
  EXPECT_EQ(s.ttft_ms.count, 5);                         // every request with a token
  EXPECT_EQ(s.inter_token_ms.count, 3 + 3 + 4 + 2 + 3);  // tokens - 1 per request
  EXPECT_EQ(s.bodies_unchunked, 0);
  EXPECT_EQ(exit_code(s), 1);

  const auto& r = run->requests;
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_EQ(r[i].index, i);
    EXPECT_EQ(r[i].seed, kSeed + i);
  }
  EXPECT_TRUE(r[0].ok());
  EXPECT_EQ(r[0].token_ids, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(r[0].text, "0a0b0c0d");
  EXPECT_EQ(r[0].finish_reason, "length");
  EXPECT_EQ(r[0].events, 7);
  EXPECT_TRUE(r[0].done);
  EXPECT_EQ(r[2].outcome, Outcome::kEventIds);
  EXPECT_EQ(r[2].duplicate_ids, 1);
  EXPECT_EQ(r[2].token_ids, (std::vector<int64_t>{21, 22, 22, 23, 24}));
  EXPECT_EQ(r[3].outcome, Outcome::kEventIds);
  EXPECT_EQ(r[3].missing_ids, 1);
  EXPECT_EQ(r[3].token_ids, (std::vector<int64_t>{31, 32, 34}));
  EXPECT_EQ(r[4].outcome, Outcome::kNoDone);
  EXPECT_FALSE(r[4].done);
  EXPECT_EQ(r[4].token_ids.size(), 4u);
  EXPECT_EQ(r[5].outcome, Outcome::kHttpStatus);
  EXPECT_EQ(r[5].http_status, 429);
  ASSERT_TRUE(r[5].retry_after_s.has_value());
  EXPECT_EQ(*r[5].retry_after_s, 7);
  EXPECT_NE(r[5].error.find("too many requests"), std::string::npos) << r[5].error;
  EXPECT_TRUE(r[5].token_ids.empty());

  // The JSON report carries the same counts and every request's tokens.
  nlohmann::json j = report_json(config, *run, s);
  EXPECT_EQ(j["ok"], 2);
  EXPECT_EQ(j["failures"]["event_ids"], 2);
  EXPECT_EQ(j["failures"]["http_429"], 1);
  EXPECT_EQ(j["duplicate_ids"], 1);
  EXPECT_EQ(j["missing_ids"], 1);
  ASSERT_EQ(j["requests"].size(), 6u);
  EXPECT_EQ(j["requests"][0]["status"], "ok");
  EXPECT_EQ(j["requests"][0]["token_ids"], nlohmann::json({1, 2, 3, 4}));
  EXPECT_EQ(j["requests"][0]["text"], "0a0b0c0d");
  EXPECT_EQ(j["requests"][0]["event_ids"], 7);
  EXPECT_EQ(j["requests"][0]["token_times_ms"].size(), 4u);
  EXPECT_TRUE(j["requests"][0]["ttft_ms"].is_number());
  EXPECT_EQ(j["requests"][4]["status"], "no_done");
  EXPECT_EQ(j["requests"][5]["status"], "http_429");
  EXPECT_TRUE(j["requests"][5]["ttft_ms"].is_null());
  EXPECT_NE(report_text(config, *run, s).find("http_429=1"), std::string::npos);

  // What the server was sent.
  auto sent = (*server)->requests();
  ASSERT_EQ(sent.size(), 6u);
  std::set<int64_t> seeds;
  for (const auto& body : sent) {
    const int64_t i = index_of(body);
    seeds.insert(i);
    EXPECT_EQ(body["model"], "fake-model");
    EXPECT_EQ(body["prompt"], make_prompt(kSeed, i, 5));
    EXPECT_EQ(body["max_tokens"], 4);
    EXPECT_EQ(body["temperature"], 0.0);
    EXPECT_EQ(body["stream"], true);
  }
  EXPECT_EQ(seeds, (std::set<int64_t>{0, 1, 2, 3, 4, 5}));
}

TEST(LoadgenEndToEnd, CleanChatRunIsAllOkAndExitsZero) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    EXPECT_TRUE(req.contains("messages"));
    return stream_of(clean_events(index_of(req), /*chat=*/true));
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 4, 8);
  config.chat = true;
  config.model = "named-model";
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  LoadSummary s = summarize_run(*run);
  EXPECT_EQ(s.ok, 8) << report_text(config, *run, s);
  EXPECT_TRUE(s.failures.empty());
  EXPECT_EQ(s.tokens, 32);
  EXPECT_EQ(exit_code(s), 0);
  EXPECT_EQ(run->requests[3].text, "3a3b3c3d");
  EXPECT_GT(s.tokens_per_s, 0);
  for (const auto& body : (*server)->requests()) EXPECT_EQ(body["model"], "named-model");
}

TEST(LoadgenEndToEnd, TokenTimesAreArrivalTimesNotBatches) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    std::vector<std::string> e = clean_events(index_of(req));
    Script s;
    s.pieces.push_back({milliseconds(0), e[0]});
    s.pieces.push_back({milliseconds(150), e[1]});
    // Event 2 in two pieces: its token arrives with the second.
    s.pieces.push_back({milliseconds(150), e[2].substr(0, 20)});
    s.pieces.push_back({milliseconds(150), e[2].substr(20) + e[3]});
    for (size_t k = 4; k < e.size(); ++k) s.pieces.push_back({milliseconds(0), e[k]});
    return s;
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 1, 1);
  config.model = "m";
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  const RequestResult& r = run->requests.at(0);
  ASSERT_TRUE(r.ok()) << r.error;
  std::vector<double> t = r.token_times_ms();
  ASSERT_EQ(t.size(), 4u);
  // Lower bounds only: the server's sleeps are the least the gaps can be; a loaded machine may
  // stretch them, but batching would shrink them to ~0.
  EXPECT_GE(t[1] - t[0], 140) << "token 1 came with token 0: the body was buffered";
  EXPECT_GE(t[2] - t[1], 290) << "token 2's time is not the arrival of its event's last piece";
  EXPECT_LT(t[3] - t[2], 100);  // tokens 2 and 3 arrived in one piece
}

TEST(LoadgenEndToEnd, StalledStreamTimesOutWithinItsBoundAndKeepsItsTokens) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    std::vector<std::string> e = clean_events(index_of(req));
    Script s;
    s.pieces.push_back({milliseconds(0), e[0]});
    s.pieces.push_back({milliseconds(20000), e[1]});  // the destructor cuts this sleep short
    return s;
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 2, 2);
  config.model = "m";
  config.request_timeout_s = 0.5;
  auto start = Clock::now();
  auto run = run_load(config);
  double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(run.ok()) << run.status().message();
  LoadSummary s = summarize_run(*run);
  EXPECT_EQ(s.failures, (std::map<std::string, int64_t>{{"timeout", 2}}));
  EXPECT_EQ(s.tokens, 2);  // the first token of each stream
  EXPECT_LT(elapsed_s, 5.0);
  EXPECT_EQ(run->requests[0].outcome, Outcome::kTimeout);
}

TEST(LoadgenEndToEnd, DurationStopsStartingRequests) {
  auto server = FakeSseServer::start(
      [](const nlohmann::json& req) { return stream_of(clean_events(index_of(req)), milliseconds(5)); });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 2, 100000);
  config.model = "m";
  config.duration_s = 0.3;
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  LoadSummary s = summarize_run(*run);
  EXPECT_TRUE(run->stopped_by_duration);
  EXPECT_GE(s.started, 2);
  EXPECT_LT(s.started, 100000);
  EXPECT_EQ(s.ok, s.started);
  EXPECT_EQ(exit_code(s), 0);
  EXPECT_LT(run->wall_s, 5.0);
}

TEST(LoadgenEndToEnd, ErrorObjectAndNonStreamAndBadJsonAreReportedByKind) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    const int64_t i = index_of(req);
    std::vector<std::string> e = clean_events(i);
    if (i == 0) {
      e[1] = sse(1, R"({"error":{"message":"engine gone","type":"server_error","param":null,"code":null}})");
      return stream_of(e);
    }
    if (i == 1) {
      Script s;  // a 200 that is not an event stream
      s.content_type = "application/json";
      s.body = R"({"choices":[]})";
      return s;
    }
    e[2] = sse(2, "{\"choices\": [");
    return stream_of(e);
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 3, 3);
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  LoadSummary s = summarize_run(*run);
  EXPECT_EQ(s.failures, (std::map<std::string, int64_t>{{"stream_error", 1}, {"bad_json", 2}}));
  EXPECT_NE(run->requests[0].error.find("engine gone"), std::string::npos);
  EXPECT_NE(run->requests[1].error.find("application/json"), std::string::npos) << run->requests[1].error;
  EXPECT_TRUE(run->requests[1].body_unchunked);  // its times would not be arrival times: flagged
  EXPECT_EQ(s.bodies_unchunked, 1);
}

TEST(LoadgenEndToEnd, ConnectionDroppedMidStreamIsAConnectionErrorThatKeepsItsTokens) {
  auto server = FakeSseServer::start([](const nlohmann::json& req) {
    std::vector<std::string> e = clean_events(index_of(req));
    e.resize(2);
    Script s = stream_of(e);
    s.cut = true;
    return s;
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  LoadgenConfig config = config_for(**server, 1, 1);
  config.model = "m";
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  const RequestResult& r = run->requests.at(0);
  EXPECT_EQ(r.outcome, Outcome::kConnectionError) << r.error;
  EXPECT_EQ(r.token_ids, (std::vector<int64_t>{1, 2}));
}

TEST(LoadgenEndToEnd, NoServerMakesEveryRequestAConnectionError) {
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  LoadgenConfig config;
  config.url = "http://127.0.0.1:" + std::to_string(*port);
  config.streams = 2;
  config.requests = 3;
  config.model = "m";
  config.request_timeout_s = 5;
  auto run = run_load(config);
  ASSERT_TRUE(run.ok()) << run.status().message();
  LoadSummary s = summarize_run(*run);
  EXPECT_EQ(s.failures, (std::map<std::string, int64_t>{{"connection_error", 3}}));
  EXPECT_EQ(exit_code(s), 1);
}

TEST(LoadgenEndToEnd, NoServerToNameTheModelIsAnError) {
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  LoadgenConfig config;
  config.url = "http://127.0.0.1:" + std::to_string(*port);
  config.request_timeout_s = 5;
  auto run = run_load(config);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(run.status().message().find("/v1/models"), std::string::npos);
}

}  // namespace
}  // namespace hotswap::loadgen
