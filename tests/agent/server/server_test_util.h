// An in-process agent server on a free loopback port, and a reference engine to compute what a
// request must produce.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/engine/engine.h"
#include "agent/migration/tls_link.h"
#include "agent/server/agent_server.h"
#include "common/http.h"
#include "tests/agent/engine/test_models.h"
#include "tests/agent/server/http_test_client.h"

namespace hotswap::testing {

inline const std::string kControlToken = "test-control-token-0123456789";

struct TestServer {
  std::shared_ptr<const engine::Model> model;
  std::unique_ptr<agent::AgentServer> server;
  int port = 0;

  explicit TestServer(engine::EngineOptions eo = {}, int max_queue = 256,
                      std::chrono::milliseconds heartbeat = std::chrono::milliseconds(100),
                      size_t resume_log_events = 1024,
                      std::shared_ptr<const migration::TlsContext> migration_tls = nullptr,
                      bool allow_plaintext_migration = true, uint16_t migration_port = 0) {
    auto m = engine::Model::load(engine::testing::tiny_model());
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    model = *m;
    eo.threads = eo.threads ? eo.threads : 2;
    auto eng = engine::Engine::create(model, eo);
    EXPECT_TRUE(eng.ok());
    agent::AgentServerOptions so;
    so.model_name = "tiny";
    so.control_token = kControlToken;
    so.max_queue = max_queue;
    so.heartbeat = heartbeat;
    so.resume_log_events = resume_log_events;
    so.migration_tls = std::move(migration_tls);
    so.allow_plaintext_migration = allow_plaintext_migration;
    so.migration_port_first = so.migration_port_last = migration_port;
    // A port picked free may be taken by the time we bind: try a few.
    for (int attempt = 0; attempt < 5 && !server; ++attempt) {
      port = http::pick_free_port().value();
      so.port = port;
      auto s = agent::AgentServer::start(model, std::move(*eng), so);
      if (s.ok()) {
        server = std::move(*s);
      } else {
        eng = engine::Engine::create(model, eo);
      }
    }
    EXPECT_TRUE(server != nullptr);
  }
};

// The tokens the engine produces for a prompt alone (EOS ignored, as the tests' requests ask):
// what every server path must return.
inline std::vector<int32_t> reference_tokens(const std::shared_ptr<const engine::Model>& model,
                                             const std::vector<int32_t>& prompt, int max_tokens, float temperature,
                                             uint64_t seed) {
  engine::EngineOptions o;
  o.threads = 1;
  auto e = engine::Engine::create(model, o).value();
  engine::GenerationRequest r;
  r.id = "ref";
  r.prompt = prompt;
  r.stop.max_tokens = max_tokens;
  r.stop.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.seed = seed;
  EXPECT_TRUE(e->add_request(r).ok());
  std::vector<int32_t> out;
  for (int i = 0; e->has_unfinished() && i < 100000; ++i)
    for (const auto& ev : e->step().value())
      if (ev.token >= 0) out.push_back(ev.token);
  return out;
}

// Token ids of a streamed body; checks the event ids run 0, 1, 2, ... and end with [DONE].
inline std::vector<int32_t> stream_tokens(const std::string& body, std::string* text = nullptr,
                                          std::string* finish = nullptr) {
  auto events = parse_sse(body);
  std::vector<int32_t> tokens;
  EXPECT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].first, static_cast<long long>(i)) << "event ids must run 0, 1, 2, ...";
    if (events[i].second == "[DONE]") {
      EXPECT_EQ(i + 1, events.size()) << "[DONE] must be last";
      continue;
    }
    auto j = nlohmann::json::parse(events[i].second);
    if (j["choices"].empty()) continue;  // usage chunk
    const auto& c = j["choices"][0];
    for (const auto& t : c["token_ids"]) tokens.push_back(t.get<int32_t>());
    if (text) *text += c.contains("text") ? c["text"].get<std::string>() : c["delta"].value("content", "");
    if (finish && !c["finish_reason"].is_null()) *finish = c["finish_reason"].get<std::string>();
  }
  if (!events.empty()) {
    EXPECT_EQ(events.back().second, "[DONE]");
  }
  return tokens;
}

}  // namespace hotswap::testing
