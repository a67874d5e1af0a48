// Migration between two agents through their control APIs, with streaming clients connected to
// the source: every client gets exactly the tokens of an unmigrated run, with event ids 0, 1,
// 2, ... and no error; and after the source dies, a client resumes on the target.
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

std::string stream_body(int i, int max_tokens) {
  return json{{"model", "tiny"},
              {"prompt", "client number " + std::to_string(i)},
              {"max_tokens", max_tokens},
              {"temperature", i % 2 ? 0.7 : 0.0},
              {"seed", 10 + i},
              {"ignore_eos", true},
              {"stream", true}}
      .dump();
}

engine::EngineOptions slow_engine() {
  engine::EngineOptions eo;
  eo.threads = 1;
  return eo;
}

// Asks the target to prepare and the source to start; returns the source's final report.
json migrate(testing::TestServer& source, testing::TestServer& target, const std::string& mode) {
  HttpResponse prep = http_call(target.port, "POST", "/control/v1/migrations",
                                json{{"id", "mig-1"}, {"source", source.server->url()}}.dump(), kAuth);
  EXPECT_EQ(prep.status, 200) << prep.body;
  std::string ep = json::parse(prep.body)["data_endpoint"];
  HttpResponse start = http_call(
      source.port, "POST", "/control/v1/migrations/mig-1/start",
      json{{"data_endpoint", ep}, {"target_url", target.server->url()}, {"mode", mode}, {"downtime_budget_ms", 20}}
          .dump(),
      kAuth);
  EXPECT_EQ(start.status, 200) << start.body;
  json st;
  for (int i = 0; i < 400; ++i) {
    st = json::parse(http_call(source.port, "GET", "/control/v1/migrations/mig-1", "", kAuth).body);
    if (st["phase"] != "PreCopy") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return st;
}

std::vector<int32_t> want_tokens(const testing::TestServer& ts, int i, int max_tokens) {
  return testing::reference_tokens(ts.model, ts.model->tokenizer().encode("client number " + std::to_string(i)),
                                   max_tokens, i % 2 ? 0.7f : 0.0f, 10 + i);
}

class HttpMigration : public ::testing::TestWithParam<std::string> {};

TEST_P(HttpMigration, StreamingClientsOnTheSourceGetExactTokens) {
  testing::TestServer a(slow_engine()), b(slow_engine());
  const int n = 4, tokens = 600;
  std::vector<std::unique_ptr<HttpConnection>> clients;
  std::vector<std::string> bodies(n);
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<HttpConnection>(a.port));
    ASSERT_TRUE(clients.back()->send_request("POST", "/v1/completions", stream_body(i, tokens)));
    HttpResponse head;
    ASSERT_TRUE(clients.back()->read_head(&head));
    ASSERT_EQ(head.status, 200);
    bodies[i] = clients.back()->read_body_piece().value_or("");
  }
  json st = migrate(a, b, GetParam());
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  EXPECT_EQ(st["report"]["result"], "switched");
  for (int i = 0; i < n; ++i) {
    bodies[i] += clients[i]->read_all_body();
    EXPECT_EQ(testing::stream_tokens(bodies[i]), want_tokens(a, i, tokens)) << "client " << i;
  }
  // The work moved: the target generated the rest.
  std::string m = http_call(b.port, "GET", "/metrics").body;
  EXPECT_EQ(m.find("hotswap_generated_tokens_total 0\n"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, HttpMigration, ::testing::Values("kv", "recompute"));

TEST(HttpMigrationResume, AfterTheSourceDiesClientsResumeOnTheTarget) {
  auto a = std::make_unique<testing::TestServer>(slow_engine());
  testing::TestServer b(slow_engine());
  const int tokens = 800;
  HttpConnection client(a->port);
  ASSERT_TRUE(client.send_request("POST", "/v1/completions", stream_body(0, tokens)));
  HttpResponse head;
  ASSERT_TRUE(client.read_head(&head));
  std::string seen = client.read_body_piece().value_or("");
  json st = migrate(*a, b, "kv");
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  // Some relayed events arrive, then the source goes away mid-stream.
  while (testing::parse_sse(seen).size() < 20) seen += client.read_body_piece().value_or("");
  a.reset();
  while (auto piece = client.read_body_piece()) seen += *piece;
  seen = seen.substr(0, seen.rfind("\n\n") + 2);
  auto events = testing::parse_sse(seen);
  ASSERT_FALSE(events.empty());
  std::string id = json::parse(events[0].second)["id"];
  HttpResponse rest =
      http_call(b.port, "GET", "/v1/streams/" + id, "", {{"Last-Event-ID", std::to_string(events.back().first)}});
  ASSERT_EQ(rest.status, 200) << rest.body;
  EXPECT_EQ(testing::stream_tokens(seen + rest.body), want_tokens(b, 0, tokens));
}

TEST(HttpMigrationErrors, BadRequestsAreRefusedAndNothingMoves) {
  testing::TestServer a, b;
  HttpResponse digest =
      http_call(b.port, "POST", "/control/v1/migrations", json{{"id", "m"}, {"model_digest", "00ff"}}.dump(), kAuth);
  EXPECT_EQ(digest.status, 409) << digest.body;
  EXPECT_EQ(http_call(b.port, "POST", "/control/v1/migrations", "{}", kAuth).status, 400);
  EXPECT_EQ(
      http_call(a.port, "POST", "/control/v1/migrations/x/start", R"({"data_endpoint": "udp://h:1"})", kAuth).status,
      400);
  EXPECT_EQ(http_call(a.port, "GET", "/control/v1/migrations/nope", "", kAuth).status, 404);
  EXPECT_EQ(http_call(a.port, "POST", "/control/v1/migrations", "{}").status, 401);
}

}  // namespace
}  // namespace hotswap::agent
