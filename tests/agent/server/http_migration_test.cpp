// Migration between two agents through their control APIs, with streaming clients connected to
// the source: every client gets exactly the tokens of an unmigrated run, with event ids 0, 1,
// 2, ... and no error; and after the source dies, a client resumes on the target.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "agent/server/migration_client.h"
#include "common/http.h"
#include "tests/agent/migration/tls_test_util.h"
#include "tests/agent/server/server_test_util.h"
#include "tests/support/promtool.h"

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

// Asks the target to prepare and the source to start, over `transport` ("tcp", "tls" or "shm"); returns
// the source's final report.
json migrate(testing::TestServer& source, testing::TestServer& target, const std::string& mode,
             const std::string& transport = "tcp", std::string* endpoint = nullptr) {
  HttpResponse prep = http_call(target.port, "POST", "/control/v1/migrations",
                                json{{"id", "mig-1"}, {"source", source.server->url()}}.dump(), kAuth);
  EXPECT_EQ(prep.status, 200) << prep.body;
  const json prepared = json::parse(prep.body);
  std::string ep = prepared["data_endpoint"];
  EXPECT_EQ(prepared["data_endpoints"]["tcp"], ep) << prep.body;
  EXPECT_EQ(ep.rfind(transport == "tls" ? "tls://" : "tcp://", 0), 0u) << ep;
  if (transport == "shm") {
    EXPECT_TRUE(prepared["data_endpoints"].contains("shm")) << prep.body;
    ep = prepared["data_endpoints"].value("shm", std::string());
    EXPECT_EQ(ep.rfind("shm:///", 0), 0u) << ep;
    // What `migrate --transport auto` compares: both agents of this process are on one node.
    json status = json::parse(http_call(source.port, "GET", "/control/v1/status", "", kAuth).body);
    EXPECT_EQ(status["node_id"], prepared["node_id"]) << status.dump() << " vs " << prep.body;
  }
  if (endpoint != nullptr) *endpoint = ep;
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

struct MigrationCase {
  std::string mode;
  std::string transport;
};

void PrintTo(const MigrationCase& c, std::ostream* os) {
  *os << c.mode << " over " << c.transport;
}

class HttpMigration : public ::testing::TestWithParam<MigrationCase> {};

// Two agents of one deployment: over tls, both hold its TLS material and refuse plaintext.
struct AgentPair {
  std::shared_ptr<const migration::TlsContext> tls;
  testing::TestServer a, b;
  explicit AgentPair(const std::string& transport)
      : tls(transport == "tls" ? migration::testing::deployment_tls("pair") : nullptr),
        a(slow_engine(), 256, std::chrono::milliseconds(100), 1024, tls, !tls),
        b(slow_engine(), 256, std::chrono::milliseconds(100), 1024, tls, !tls) {}
};

TEST_P(HttpMigration, StreamingClientsOnTheSourceGetExactTokens) {
  AgentPair pair(GetParam().transport);
  testing::TestServer& a = pair.a;
  testing::TestServer& b = pair.b;
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
  std::string endpoint;
  json st = migrate(a, b, GetParam().mode, GetParam().transport, &endpoint);
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  EXPECT_EQ(st["report"]["result"], "switched");
  EXPECT_EQ(st["transport"], GetParam().transport) << st.dump();
  const json target_side = json::parse(http_call(b.port, "GET", "/control/v1/migrations/mig-1", "", kAuth).body);
  EXPECT_EQ(target_side["transport"], GetParam().transport) << target_side.dump();
  for (int i = 0; i < n; ++i) {
    bodies[i] += clients[i]->read_all_body();
    EXPECT_EQ(testing::stream_tokens(bodies[i]), want_tokens(a, i, tokens)) << "client " << i;
  }
  // Every relayed stream ended: the source's migration is Completed.
  json done;
  for (int i = 0; i < 500; ++i) {
    done = json::parse(http_call(a.port, "GET", "/control/v1/migrations/mig-1", "", kAuth).body);
    if (done["phase"] == "Completed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(done["phase"], "Completed") << done.dump();
  // The work moved: the target generated the rest.
  std::string m = http_call(b.port, "GET", "/metrics").body;
  EXPECT_EQ(m.find("hotswap_generated_tokens_total 0\n"), std::string::npos);
  // Both ends counted the migration: result by role, bytes by transport and direction, the
  // source's downtime once (and its pre-copy rounds in kv mode).
  const std::string t = GetParam().transport;
  std::string ms = http_call(a.port, "GET", "/metrics").body;
  EXPECT_NE(ms.find("hotswap_migrations_total{result=\"switched\",role=\"source\"} 1"), std::string::npos) << ms;
  EXPECT_NE(m.find("hotswap_migrations_total{result=\"switched\",role=\"target\"} 1"), std::string::npos) << m;
  EXPECT_NE(ms.find("hotswap_migration_bytes_total{direction=\"sent\",transport=\"" + t + "\"}"), std::string::npos);
  EXPECT_NE(m.find("hotswap_migration_bytes_total{direction=\"received\",transport=\"" + t + "\"}"),
            std::string::npos);
  EXPECT_NE(ms.find("hotswap_migration_downtime_seconds_count 1"), std::string::npos) << ms;
  // Both pages, with every migration family filled in, pass Prometheus's own checker.
  for (const std::string* page : {&m, &ms}) {
    const auto lint = hotswap::testing::promtool_check_metrics(*page);
    EXPECT_EQ(lint.exit_code, 0) << lint.output;
    EXPECT_EQ(lint.output, "") << lint.output;
  }
  if (GetParam().mode == "kv") {
    EXPECT_EQ(ms.find("hotswap_migration_precopy_rounds_total 0\n"), std::string::npos) << ms;
  }
  if (GetParam().transport == "shm") {
    // The target's socket and its directory went once the source connected.
    const std::string socket = endpoint.substr(std::string("shm://").size());
    EXPECT_FALSE(std::filesystem::exists(socket)) << socket;
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(socket).parent_path())) << socket;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, HttpMigration,
                         ::testing::Values(MigrationCase{"kv", "tcp"}, MigrationCase{"recompute", "tcp"},
                                           MigrationCase{"kv", "shm"}, MigrationCase{"kv", "tls"}));

// After the switch, the Service's endpoints and the clients' pooled connections still lead to
// the source for a while: a new request reaching it is forwarded to the target, which serves it
// (streamed or not) with the tokens of an unmigrated run; the answer says Connection: close so
// that the client's next request goes through the Service again.
TEST(HttpMigrationForwarding, NewRequestsReachingTheSourceAfterTheSwitchAreServedByTheTarget) {
  testing::TestServer a(slow_engine()), b(slow_engine());
  HttpConnection client(a.port);
  ASSERT_TRUE(client.send_request("POST", "/v1/completions", stream_body(0, 400)));
  HttpResponse head;
  ASSERT_TRUE(client.read_head(&head));
  json st = migrate(a, b, "kv");
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  const std::string before = http_call(b.port, "GET", "/metrics").body;

  HttpResponse streamed = http_call(a.port, "POST", "/v1/completions", stream_body(5, 24));
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_EQ(streamed.headers["connection"], "close");
  EXPECT_EQ(streamed.headers["content-type"].rfind("text/event-stream", 0), 0u) << streamed.headers["content-type"];
  EXPECT_EQ(testing::stream_tokens(streamed.body), want_tokens(a, 5, 24));

  const std::string plain = json{{"model", "tiny"}, {"prompt", "client number 6"}, {"max_tokens", 12},
                                 {"temperature", 0.0}, {"seed", 16}, {"ignore_eos", true}}.dump();
  HttpResponse whole = http_call(a.port, "POST", "/v1/completions", plain);
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want_tokens(a, 6, 12));
  // A bad request is refused where it arrives, naming what is wrong.
  HttpResponse bad = http_call(a.port, "POST", "/v1/completions", json{{"model", "tiny"}, {"max_tokens", 4}}.dump());
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("prompt"), std::string::npos) << bad.body;
  // The target counted them.
  const std::string after = http_call(b.port, "GET", "/metrics").body;
  EXPECT_EQ(before.find("hotswap_requests_total{code=\"200\",endpoint=\"completions\"}"), std::string::npos) << before;
  EXPECT_NE(after.find("hotswap_requests_total{code=\"200\",endpoint=\"completions\"} 2"), std::string::npos) << after;
  client.read_all_body();
}

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
  for (int i = 0; i < 10000 && testing::parse_sse(seen).size() < 20; ++i) {
    auto piece = client.read_body_piece();
    if (!piece) break;
    seen += *piece;
  }
  ASSERT_GE(testing::parse_sse(seen).size(), 20u) << seen;
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
  EXPECT_EQ(http_call(a.port, "POST", "/control/v1/migrations/y/start",
                      R"({"data_endpoint": "shm://relative.sock", "target_url": "http://127.0.0.1:1"})", kAuth)
                .status,
            400);
  // Each badly typed start field is refused, named, before anything runs.
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{{"mode", 3},
                                                                            {"mode", "fast"},
                                                                            {"max_rounds", "8"},
                                                                            {"max_rounds", -1},
                                                                            {"downtime_budget_ms", -5},
                                                                            {"bandwidth_cap_bytes_per_s", 1.5},
                                                                            {"switch_timeout_ms", 0},
                                                                            {"switch_timeout_ms", "2000"},
                                                                            {"sequences", "r1"},
                                                                            {"sequences", json::array({1})}}) {
    json body = {{"data_endpoint", "tcp://127.0.0.1:1"}, {"target_url", "http://127.0.0.1:1"}};
    body[field] = value;
    HttpResponse r = http_call(a.port, "POST", "/control/v1/migrations/t/start", body.dump(), kAuth);
    EXPECT_EQ(r.status, 400) << field << " = " << value.dump() << ": " << r.body;
    EXPECT_NE(r.body.find(field == "mode" && value.is_string() ? "kv, recompute, auto" : field), std::string::npos)
        << r.body;
  }
  EXPECT_EQ(http_call(a.port, "GET", "/control/v1/migrations/t", "", kAuth).status, 404);
  EXPECT_EQ(http_call(a.port, "GET", "/control/v1/migrations/nope", "", kAuth).status, 404);
  EXPECT_EQ(http_call(a.port, "POST", "/control/v1/migrations", "{}").status, 401);
}

// An agent of another build as the source: it answers only GET /control/v1/status, with `status`;
// every other call is 404 (in the control API's error shape).
struct OtherBuildSource {
  std::unique_ptr<http::Listener> listener;
  std::string url;
  explicit OtherBuildSource(json status) {
    const int port = http::pick_free_port().value();
    url = "http://127.0.0.1:" + std::to_string(port);
    auto l = http::open_listener(
        url,
        [status](web::http::http_request req, std::string) {
          if (req.request_uri().path() == "/control/v1/status")
            http::reply_json(req, web::http::status_codes::OK, status);
          else
            http::reply_json(req, web::http::status_codes::NotFound, {{"error", {{"message", "no such route"}}}});
        },
        [](const web::http::http_request&, int, const std::string& m) { return json{{"error", {{"message", m}}}}; });
    EXPECT_TRUE(l.ok()) << l.status().to_string();
    if (l.ok()) listener = std::move(l).value();
  }
  ~OtherBuildSource() {
    if (listener) listener->close().wait();
  }
};

// The client passes the source's model digest and migration protocol, from its status, to the
// target's prepare (the digest for kv only): a target that could not take the stream refuses at
// once, naming which, and nothing is left listening on it. A source of an older build, which
// says neither, is prepared for as before (its snapshot's manifest is checked in any case).
TEST(HttpMigrationErrors, ATargetRefusesASourceOfAnotherProtocolOrModelBeforeItPrepares) {
  testing::TestServer target;
  const json own = json::parse(http_call(target.port, "GET", "/control/v1/status", "", kAuth).body);
  ASSERT_TRUE(own["model_digest"].is_string()) << own.dump();
  ASSERT_TRUE(own["migration_protocol"].is_number_unsigned()) << own.dump();
  const uint64_t protocol = own["migration_protocol"];
  struct Case {
    json status;
    std::string refusal;  // "" : prepared
    std::string mode = "kv";
  };
  const std::vector<Case> cases = {
      {{{"node_id", "n"}, {"model_digest", own["model_digest"]}, {"migration_protocol", protocol + 1}},
       "migration protocol version " + std::to_string(protocol + 1) + " is not this agent's " + std::to_string(protocol)},
      {{{"node_id", "n"}, {"model_digest", "00ff"}, {"migration_protocol", protocol}},
       "model digest 00ff is not this agent's"},
      // Recompute may change the weights (a version rollout): the digest is not passed.
      {{{"node_id", "n"}, {"model_digest", "00ff"}, {"migration_protocol", protocol}}, "", "recompute"},
      {{{"node_id", "n"}}, ""}};
  int i = 0;
  for (const Case& c : cases) {
    OtherBuildSource source(c.status);
    agent::MigrationCall call;
    call.source = source.url;
    call.target = target.server->url();
    call.token = testing::kControlToken;
    call.id = "m" + std::to_string(i++);
    call.transport = "tcp";
    call.mode = c.mode;
    auto started = agent::start_migration(call);
    ASSERT_FALSE(started.ok()) << c.status.dump();
    if (c.refusal.empty()) {
      // Prepared, then the stand-in refused to start: the client aborted the target.
      EXPECT_NE(started.status().message().find("no such route"), std::string::npos) << started.status().to_string();
      HttpResponse st;
      for (int tries = 0; tries < 250; ++tries) {  // the abort ends the target's wait within moments
        st = http_call(target.port, "GET", "/control/v1/migrations/" + call.id, "", kAuth);
        if (st.status != 200 || json::parse(st.body)["phase"] != "TargetLoading") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ASSERT_EQ(st.status, 200) << st.body;
      EXPECT_NE(json::parse(st.body)["phase"], "TargetLoading") << st.body;
    } else {
      EXPECT_EQ(started.status().code(), StatusCode::kFailedPrecondition) << started.status().to_string();
      EXPECT_NE(started.status().message().find(c.refusal), std::string::npos) << started.status().to_string();
      EXPECT_EQ(http_call(target.port, "GET", "/control/v1/migrations/" + call.id, "", kAuth).status, 404)
          << "nothing prepared";
    }
  }
  // Straight at the target: a protocol version that is not an integer is named.
  HttpResponse typed = http_call(target.port, "POST", "/control/v1/migrations",
                                 json{{"id", "t"}, {"protocol_version", "1"}}.dump(), kAuth);
  EXPECT_EQ(typed.status, 400) << typed.body;
  EXPECT_NE(typed.body.find("protocol_version"), std::string::npos) << typed.body;
}

// --migration-ports: a target's data listener binds within the range, one port per migration in
// flight; with the range taken, prepare is refused naming the flag.
TEST(HttpMigrationErrors, ATargetsDataListenerBindsWithinItsPortRange) {
  const uint16_t port = static_cast<uint16_t>(http::pick_free_port().value());
  testing::TestServer b(engine::EngineOptions{}, 256, std::chrono::milliseconds(100), 1024, nullptr, true, port);
  HttpResponse first = http_call(b.port, "POST", "/control/v1/migrations", json{{"id", "m1"}}.dump(), kAuth);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(json::parse(first.body)["data_endpoint"], "tcp://127.0.0.1:" + std::to_string(port)) << first.body;
  HttpResponse second = http_call(b.port, "POST", "/control/v1/migrations", json{{"id", "m2"}}.dump(), kAuth);
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_NE(second.body.find("no free migration data port in " + std::to_string(port) + ".." + std::to_string(port)),
            std::string::npos)
      << second.body;
  EXPECT_NE(second.body.find("--migration-ports"), std::string::npos) << second.body;
  EXPECT_EQ(http_call(b.port, "POST", "/control/v1/migrations/m1/abort", "", kAuth).status, 200);
}

TEST(HttpMigrationErrors, AbortBeforeTheSourceConnectsEndsTheTargetsWaitAndRemovesItsSocket) {
  testing::TestServer b;
  HttpResponse prep = http_call(b.port, "POST", "/control/v1/migrations", json{{"id", "m"}}.dump(), kAuth);
  ASSERT_EQ(prep.status, 200) << prep.body;
  const std::string socket = json::parse(prep.body)["data_endpoints"].value("shm", std::string()).substr(6);
  ASSERT_FALSE(socket.empty()) << prep.body;
  EXPECT_TRUE(std::filesystem::exists(socket)) << socket;
  ASSERT_EQ(http_call(b.port, "POST", "/control/v1/migrations/m/abort", "{}", kAuth).status, 200);
  json st;
  for (int i = 0; i < 200; ++i) {  // the wait looks at aborts every 100 ms: well within 2 s
    st = json::parse(http_call(b.port, "GET", "/control/v1/migrations/m", "", kAuth).body);
    if (st["phase"] == "Failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(st["phase"], "Failed") << st.dump();
  EXPECT_NE(st.value("error", std::string()).find("aborted before the source connected"), std::string::npos)
      << st.dump();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(socket).parent_path())) << socket;
}

// The data channel's policy: TLS material, else plaintext only where allowed.
TEST(HttpMigrationSecurity, AnAgentWithNeitherTlsNorPlaintextAllowedTakesNoMigration) {
  testing::TestServer b({}, 256, std::chrono::milliseconds(100), 1024, nullptr, false);
  HttpResponse prep = http_call(b.port, "POST", "/control/v1/migrations", json{{"id", "m"}}.dump(), kAuth);
  EXPECT_EQ(prep.status, 409) << prep.body;
  EXPECT_NE(prep.body.find("no migration TLS material"), std::string::npos) << prep.body;
  EXPECT_NE(prep.body.find("--allow-plaintext-migration"), std::string::npos) << prep.body;
  EXPECT_EQ(http_call(b.port, "GET", "/control/v1/migrations/m", "", kAuth).status, 404);  // nothing was made
  HttpResponse start =
      http_call(b.port, "POST", "/control/v1/migrations/s/start",
                json{{"data_endpoint", "tcp://127.0.0.1:1"}, {"target_url", "http://127.0.0.1:1"}}.dump(), kAuth);
  EXPECT_EQ(start.status, 409) << start.body;
  EXPECT_NE(start.body.find("is plaintext"), std::string::npos) << start.body;
}

TEST(HttpMigrationSecurity, ASourceSendsToTlsEndpointsOnlyWithMaterialAndToPlainOnesOnlyWhenAllowed) {
  testing::TestServer with_tls({}, 256, std::chrono::milliseconds(100), 1024, migration::testing::deployment_tls("d"),
                               false);
  testing::TestServer plain;  // plaintext allowed, no material
  const json target = {{"target_url", "http://127.0.0.1:1"}};
  json body = target;
  body["data_endpoint"] = "tcp://127.0.0.1:1";
  HttpResponse r = http_call(with_tls.port, "POST", "/control/v1/migrations/a/start", body.dump(), kAuth);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("does not send a migration in the clear"), std::string::npos) << r.body;
  body["data_endpoint"] = "tls://127.0.0.1:1";
  r = http_call(plain.port, "POST", "/control/v1/migrations/b/start", body.dump(), kAuth);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("is TLS, and this agent has no migration TLS material"), std::string::npos) << r.body;
  for (const auto* ts : {&with_tls, &plain})
    for (const char* id : {"a", "b"})
      EXPECT_EQ(http_call(ts->port, "GET", std::string("/control/v1/migrations/") + id, "", kAuth).status, 404);
}

TEST(HttpMigrationSecurity, AgentsOfAnotherDeploymentCannotMigrateAndNothingIsLost) {
  // The source holds deployment X's material, the target Y's: the source's handshake fails on
  // the target's certificate, the source keeps its requests, and the target, having turned the
  // stranger away, still waits for its own source.
  testing::TestServer a(slow_engine(), 256, std::chrono::milliseconds(100), 1024,
                        migration::testing::deployment_tls("x"), false);
  testing::TestServer b(slow_engine(), 256, std::chrono::milliseconds(100), 1024,
                        migration::testing::deployment_tls("y"), false);
  HttpConnection client(a.port);
  ASSERT_TRUE(client.send_request("POST", "/v1/completions", stream_body(0, 200)));
  HttpResponse head;
  ASSERT_TRUE(client.read_head(&head));
  ASSERT_EQ(head.status, 200);
  std::string body = client.read_body_piece().value_or("");
  json st = migrate(a, b, "kv", "tls");
  EXPECT_EQ(st["phase"], "Failed") << st.dump();
  EXPECT_NE(st.value("error", std::string()).find("certificate verify failed"), std::string::npos) << st.dump();
  const json target_side = json::parse(http_call(b.port, "GET", "/control/v1/migrations/mig-1", "", kAuth).body);
  EXPECT_EQ(target_side["phase"], "TargetLoading") << target_side.dump();
  body += client.read_all_body();
  EXPECT_EQ(testing::stream_tokens(body), want_tokens(a, 0, 200));
  EXPECT_EQ(http_call(b.port, "POST", "/control/v1/migrations/mig-1/abort", "{}", kAuth).status, 200);
}

}  // namespace
}  // namespace hotswap::agent
