// The agent server over real HTTP on loopback.
#include "agent/server/agent_server.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

using nlohmann::json;
using testing::http_call;
using testing::HttpConnection;
using testing::HttpResponse;

const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer " + testing::kControlToken}};

std::string completion_body(const std::string& prompt, int max_tokens, float temperature, uint64_t seed, bool stream) {
  return json{{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", temperature},
              {"seed", seed},    {"stream", stream}, {"ignore_eos", true}}
      .dump();
}

TEST(AgentServer, StreamingAndNonStreamingGiveTheEngineTokens) {
  testing::TestServer ts;
  const std::string prompt = "Blocks move between nodes";
  auto want = testing::reference_tokens(ts.model, ts.model->tokenizer().encode(prompt), 12, 0.8f, 7);
  ASSERT_EQ(want.size(), 12u);

  HttpResponse r = http_call(ts.port, "POST", "/v1/completions", completion_body(prompt, 12, 0.8f, 7, false));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want);
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");

  HttpResponse s = http_call(ts.port, "POST", "/v1/completions", completion_body(prompt, 12, 0.8f, 7, true));
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.headers["content-type"], "text/event-stream");
  std::string text, finish;
  EXPECT_EQ(testing::stream_tokens(s.body, &text, &finish), want);
  EXPECT_EQ(text, j["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(finish, "length");
}

TEST(AgentServer, ChatCompletionStreamsARoleThenContent) {
  testing::TestServer ts;
  json body = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Where is the cache?"}}}},
               {"max_tokens", 6}, {"temperature", 0},
               {"stream", true},  {"stream_options", {{"include_usage", true}}}};
  HttpResponse s = http_call(ts.port, "POST", "/v1/chat/completions", body.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  auto events = testing::parse_sse(s.body);
  ASSERT_GE(events.size(), 3u);
  json first = json::parse(events[0].second);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  json usage = json::parse(events[events.size() - 2].second);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_GE(usage["usage"]["completion_tokens"].get<int>(), 1);
  EXPECT_EQ(usage["usage"]["completion_tokens"].get<size_t>(), testing::stream_tokens(s.body).size());
}

TEST(AgentServer, SixtyFourConcurrentStreamsAllCompleteWithTheirTokens) {
  testing::TestServer ts;
  const int n = 64;
  std::vector<std::vector<int32_t>> got(n), want(n);
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back([&, i] {
      HttpResponse s =
          http_call(ts.port, "POST", "/v1/completions",
                    completion_body("stream number " + std::to_string(i), 16, i % 2 ? 0.7f : 0.0f, i, true));
      if (s.status == 200) got[i] = testing::stream_tokens(s.body);
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < n; ++i) {
    want[i] = testing::reference_tokens(ts.model, ts.model->tokenizer().encode("stream number " + std::to_string(i)),
                                        16, i % 2 ? 0.7f : 0.0f, i);
    EXPECT_EQ(got[i], want[i]) << "stream " << i;
  }
}

TEST(AgentServer, MalformedRequestsGet400NamingTheField) {
  testing::TestServer ts;
  struct Case {
    std::string body;
    int status;
    std::string param;
  };
  std::vector<Case> cases = {
      {"{not json", 400, ""},
      {"[1, 2]", 400, ""},
      {R"({"prompt": "x"})", 400, "model"},
      {R"({"model": "other", "prompt": "x"})", 404, "model"},
      {R"({"model": "tiny"})", 400, "prompt"},
      {R"({"model": "tiny", "prompt": 5})", 400, "prompt"},
      {R"({"model": "tiny", "prompt": "x", "max_tokens": "8"})", 400, "max_tokens"},
      {R"({"model": "tiny", "prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
      {R"({"model": "tiny", "prompt": "x", "max_tokens": 100000})", 400, "max_tokens"},
      {R"({"model": "tiny", "prompt": "x", "temperature": -1})", 400, "temperature"},
      {R"({"model": "tiny", "prompt": "x", "top_p": 0})", 400, "top_p"},
      {R"({"model": "tiny", "prompt": "x", "top_k": "all"})", 400, "top_k"},
      {R"({"model": "tiny", "prompt": "x", "n": 2})", 400, "n"},
      {R"({"model": "tiny", "prompt": "x", "seed": 1.5})", 400, "seed"},
      {R"({"model": "tiny", "prompt": "x", "stop": [1]})", 400, "stop"},
      {R"({"model": "tiny", "prompt": "x", "stream": "yes"})", 400, "stream"},
      {R"({"model": "tiny", "prompt": "x", "logprobs": 3})", 400, "logprobs"},
      {R"({"model": "tiny", "prompt": [1, 99999]})", 400, "prompt"},
  };
  for (const auto& c : cases) {
    HttpResponse r = http_call(ts.port, "POST", "/v1/completions", c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
    if (c.param.empty()) {
      EXPECT_TRUE(j["error"]["param"].is_null()) << r.body;
    } else {
      EXPECT_EQ(j["error"]["param"], c.param) << r.body;
      EXPECT_NE(j["error"]["message"].get<std::string>().find(c.param), std::string::npos) << r.body;
    }
  }
  HttpResponse chat = http_call(ts.port, "POST", "/v1/chat/completions",
                                R"({"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]})");
  EXPECT_EQ(chat.status, 400);
  EXPECT_EQ(json::parse(chat.body)["error"]["param"], "messages[0].role");
  // Nothing was queued by any of them.
  json st = json::parse(http_call(ts.port, "GET", "/control/v1/status", "", kAuth).body);
  EXPECT_EQ(st["open_requests"], 0);
}

TEST(AgentServer, ControlApiRefusesMissingOrWrongToken) {
  testing::TestServer ts;
  HttpResponse none = http_call(ts.port, "GET", "/control/v1/status");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer");
  HttpResponse wrong =
      http_call(ts.port, "GET", "/control/v1/status", "", {{"Authorization", "Bearer not-the-token-at-all"}});
  EXPECT_EQ(wrong.status, 403);
  HttpResponse drain_wrong = http_call(ts.port, "POST", "/control/v1/drain", "", {{"Authorization", "Basic abc"}});
  EXPECT_EQ(drain_wrong.status, 401);
  HttpResponse ok = http_call(ts.port, "GET", "/control/v1/status", "", kAuth);
  EXPECT_EQ(ok.status, 200);
  // Refused drains changed nothing.
  EXPECT_EQ(http_call(ts.port, "GET", "/readyz").status, 200);
}

TEST(AgentServer, DisconnectCancelsTheSequenceAndFreesItsBlocks) {
  testing::TestServer ts;
  {
    HttpConnection c(ts.port);
    ASSERT_TRUE(c.send_request("POST", "/v1/completions", completion_body("a long story", 2000, 0.0f, 1, true)));
    HttpResponse head;
    ASSERT_TRUE(c.read_head(&head));
    ASSERT_EQ(head.status, 200);
    ASSERT_TRUE(c.read_body_piece().has_value());
    json st = json::parse(http_call(ts.port, "GET", "/control/v1/status", "", kAuth).body);
    ASSERT_EQ(st["sequences"].size(), 1u);
    EXPECT_GT(st["kv_blocks"]["used"].get<int>(), 0);
  }  // hang up
  json st;
  for (int i = 0; i < 200; ++i) {
    st = json::parse(http_call(ts.port, "GET", "/control/v1/status", "", kAuth).body);
    if (st["sequences"].empty() && st["kv_blocks"]["used"] == 0 && st["open_requests"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(st["sequences"].empty()) << st.dump();
  EXPECT_EQ(st["kv_blocks"]["used"], 0) << st.dump();
  EXPECT_EQ(st["open_requests"], 0) << st.dump();
}

TEST(AgentServer, QueuedStreamWhoseClientLeftIsCancelledBeforeItRuns) {
  // One sequence at a time, one engine thread: the first request runs for a few hundred ms
  // while the second waits; its client hangs up and the heartbeat (20 ms) finds that out.
  engine::EngineOptions eo;
  eo.max_num_seqs = 1;
  eo.threads = 1;
  testing::TestServer ts(eo, 256, std::chrono::milliseconds(20));
  HttpConnection running(ts.port);
  ASSERT_TRUE(running.send_request("POST", "/v1/completions", completion_body("first", 2000, 0.0f, 1, true)));
  HttpResponse head;
  ASSERT_TRUE(running.read_head(&head));
  {
    HttpConnection queued(ts.port);
    ASSERT_TRUE(queued.send_request("POST", "/v1/completions", completion_body("second", 2000, 0.0f, 2, true)));
    ASSERT_TRUE(queued.read_head(&head));
  }
  EXPECT_EQ(testing::stream_tokens(running.read_all_body()).size(), 2000u);
  json st;
  for (int i = 0; i < 200; ++i) {
    st = json::parse(http_call(ts.port, "GET", "/control/v1/status", "", kAuth).body);
    if (st["open_requests"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(st["open_requests"], 0) << st.dump();
  // Only the first request ever generated: the second was cancelled while it waited.
  std::string m = http_call(ts.port, "GET", "/metrics").body;
  EXPECT_NE(m.find("hotswap_generated_tokens_total 2000\n"), std::string::npos) << m;
}

TEST(AgentServer, FullQueueAnswers429WithRetryAfter) {
  engine::EngineOptions eo;
  eo.max_num_seqs = 1;
  testing::TestServer ts(eo, /*max_queue=*/0);
  HttpConnection running(ts.port);
  ASSERT_TRUE(running.send_request("POST", "/v1/completions", completion_body("first", 1500, 0.0f, 1, true)));
  HttpResponse head;
  ASSERT_TRUE(running.read_head(&head));
  HttpResponse r = http_call(ts.port, "POST", "/v1/completions", completion_body("second", 4, 0.0f, 2, false));
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "rate_limit_error");
}

TEST(AgentServer, DrainFailsReadinessAndRefusesNewRequests) {
  testing::TestServer ts;
  EXPECT_EQ(http_call(ts.port, "GET", "/readyz").status, 200);
  EXPECT_EQ(http_call(ts.port, "POST", "/control/v1/drain", "", kAuth).status, 200);
  EXPECT_EQ(http_call(ts.port, "GET", "/readyz").status, 503);
  EXPECT_EQ(http_call(ts.port, "GET", "/healthz").status, 200);
  HttpResponse r = http_call(ts.port, "POST", "/v1/completions", completion_body("x", 4, 0.0f, 1, false));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "draining");
}

TEST(AgentServer, MetricsCountRequestsAndTokens) {
  testing::TestServer ts;
  ASSERT_EQ(http_call(ts.port, "POST", "/v1/completions", completion_body("x", 5, 0.0f, 1, false)).status, 200);
  ASSERT_EQ(http_call(ts.port, "POST", "/v1/completions", R"({"model": 1})").status, 400);
  std::string m = http_call(ts.port, "GET", "/metrics").body;
  EXPECT_NE(m.find("hotswap_requests_total{code=\"200\",endpoint=\"completions\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_requests_total{code=\"400\",endpoint=\"completions\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_generated_tokens_total 5"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_time_to_first_token_seconds_count 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_inter_token_latency_seconds_count 4"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_kv_blocks{state=\"free\"}"), std::string::npos) << m;
}

TEST(AgentServer, UnknownRoutesAndMethodsAreRefused) {
  testing::TestServer ts;
  EXPECT_EQ(http_call(ts.port, "GET", "/v2/nothing").status, 404);
  EXPECT_EQ(http_call(ts.port, "GET", "/v1/completions").status, 405);
  HttpResponse models = http_call(ts.port, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body)["data"][0]["id"], "tiny");
}

// Bodies: a chunked one is read as one with a Content-Length; one over the 4 MiB cap, on a
// generate or a control route, is refused with 413 in the OpenAI shape and counted, the
// connection closed; the agent goes on serving.
TEST(AgentServer, ChunkedBodiesAreServedAndBodiesOverTheCapRefused) {
  testing::TestServer ts;
  const std::string prompt = "Blocks move between nodes";
  auto want = testing::reference_tokens(ts.model, ts.model->tokenizer().encode(prompt), 6, 0.0f, 3);
  {
    testing::HttpConnection c(ts.port);
    const std::string body = completion_body(prompt, 6, 0.0f, 3, false);
    const std::string half = body.substr(0, body.size() / 2), rest = body.substr(body.size() / 2);
    char a[16], b[16];
    std::snprintf(a, sizeof(a), "%zx\r\n", half.size());
    std::snprintf(b, sizeof(b), "%zx\r\n", rest.size());
    const std::string wire = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
                             std::string(a) + half + "\r\n" + b + rest + "\r\n0\r\n\r\n";
    c.flood(wire, [] { return std::string(); }, 0);
    HttpResponse r;
    ASSERT_TRUE(c.read_head(&r));
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(json::parse(c.read_all_body())["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want);
  }
  for (const std::string path : {"/v1/completions", "/control/v1/migrations"}) {
    testing::HttpConnection c(ts.port);
    const std::string head = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                             testing::kControlToken + "\r\nContent-Length: " + std::to_string(64 << 20) + "\r\n\r\n";
    // Well past what socket buffers hold: a server that read it all would take it all.
    auto sent = c.flood(head, [] { return std::string(1 << 20, ' '); }, 64 << 20);
    EXPECT_TRUE(sent.peer_closed) << path;
    EXPECT_LT(sent.body_bytes_sent, size_t{64} << 20) << path;
    HttpResponse r;
    ASSERT_TRUE(c.read_head(&r)) << path;
    EXPECT_EQ(r.status, 413) << path;
    json e = json::parse(c.read_all_body())["error"];
    EXPECT_EQ(e["code"], "request_too_large") << path;
    EXPECT_EQ(e["message"], "the request body exceeds 4194304 bytes") << path;
  }
  std::string m = http_call(ts.port, "GET", "/metrics").body;
  EXPECT_NE(m.find("hotswap_requests_total{code=\"413\",endpoint=\"completions\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_requests_total{code=\"413\",endpoint=\"control\"} 1"), std::string::npos) << m;
  EXPECT_EQ(http_call(ts.port, "POST", "/v1/completions", completion_body(prompt, 6, 0.0f, 3, false)).status, 200);
}

// The agent's public port is its connection guard's: a head over 32 KiB gets 431 in the
// OpenAI shape, counted by reason, and the agent serves the next connection.
TEST(AgentServer, AHeadOverTheLimitIsRefusedInTheOpenAIShapeAndCounted) {
  testing::TestServer ts;
  HttpResponse r = http_call(ts.port, "GET", "/v1/models", "", {{"X-Padding", std::string(40 << 10, 'p')}});
  ASSERT_EQ(r.status, 431);
  json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "header_too_large");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_NE(e["message"].get<std::string>().find("longer than 32768 bytes"), std::string::npos) << e;
  std::string m = http_call(ts.port, "GET", "/metrics").body;
  EXPECT_NE(m.find("hotswap_http_connections_closed_total{reason=\"header_too_large\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_http_connections 1"), std::string::npos) << "the scrape's own connection\n" << m;
}

}  // namespace
}  // namespace hotswap::agent

namespace hotswap::agent {
namespace {

// A GPU fault reported through the control API (the fault tests' injection point, and where a
// node-side Xid/ECC/thermal monitor reports) shows in /healthz, /control/v1/status and the
// metrics while the agent keeps serving; DELETE clears it. Bad reports are refused by name.
TEST(AgentServerFaults, AReportedGpuFaultShowsInHealthAndStatusUntilCleared) {
  testing::TestServer ts;
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer " + testing::kControlToken}};
  HttpResponse none = http_call(ts.port, "POST", "/control/v1/faults", R"({"kind":"xid"})");
  EXPECT_EQ(none.status, 401);
  HttpResponse bad = http_call(ts.port, "POST", "/control/v1/faults", R"({"kind":"meltdown"})", auth);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("kind"), std::string::npos) << bad.body;
  EXPECT_EQ(http_call(ts.port, "POST", "/control/v1/faults", "{not json", auth).status, 400);
  EXPECT_EQ(json::parse(http_call(ts.port, "GET", "/healthz").body)["status"], "ok");

  HttpResponse ok = http_call(ts.port, "POST", "/control/v1/faults", R"({"kind":"xid","message":"Xid 79"})", auth);
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json health = json::parse(http_call(ts.port, "GET", "/healthz").body);
  EXPECT_EQ(health["status"], "gpu_fault");
  ASSERT_EQ(health["gpu_faults"].size(), 1u);
  EXPECT_EQ(health["gpu_faults"][0]["kind"], "xid");
  EXPECT_EQ(health["gpu_faults"][0]["message"], "Xid 79");
  const json status = json::parse(http_call(ts.port, "GET", "/control/v1/status", "", auth).body);
  EXPECT_EQ(status["gpu_faults"].size(), 1u);
  const std::string m = http_call(ts.port, "GET", "/metrics").body;
  EXPECT_NE(m.find("hotswap_gpu_faults_total{kind=\"xid\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("hotswap_gpu_faulty 1"), std::string::npos);
  // It still serves.
  EXPECT_EQ(http_call(ts.port, "POST", "/v1/completions", completion_body("still here", 4, 0, 1, false)).status, 200);

  EXPECT_EQ(http_call(ts.port, "DELETE", "/control/v1/faults", "", auth).status, 200);
  EXPECT_EQ(json::parse(http_call(ts.port, "GET", "/healthz").body)["status"], "ok");
  EXPECT_NE(http_call(ts.port, "GET", "/metrics").body.find("hotswap_gpu_faulty 0"), std::string::npos);
}

}  // namespace
}  // namespace hotswap::agent
