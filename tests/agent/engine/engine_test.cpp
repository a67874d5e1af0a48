// The engine: continuous batching, preemption, sampling, stop conditions, request validation.
#include "agent/engine/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

std::shared_ptr<const Model> tiny(Architecture arch = Architecture::kLlama) {
  auto m = Model::load(testing::tiny_model(arch));
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return *m;
}

GenerationRequest request(const std::string& id, std::vector<int32_t> prompt, int max_tokens, float temperature = 0,
                          uint64_t seed = 0) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.stop.max_tokens = max_tokens;
  r.stop.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.sampling.top_p = temperature > 0 ? 0.9f : 1.0f;
  r.seed = seed;
  return r;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::kNone;
};

// Runs the engine until idle; asserts every step succeeds and the loop is bounded.
std::map<std::string, Outcome> run_all(Engine* e, int max_steps = 10000) {
  std::map<std::string, Outcome> out;
  for (int i = 0; e->has_unfinished(); ++i) {
    EXPECT_LT(i, max_steps) << "engine did not finish";
    if (i >= max_steps) break;
    auto events = e->step();
    EXPECT_TRUE(events.ok()) << events.status().to_string();
    if (!events.ok()) break;
    for (const auto& ev : *events) {
      auto& o = out[ev.request_id];
      if (ev.token >= 0) {
        EXPECT_EQ(ev.index, static_cast<int64_t>(o.tokens.size()));
        o.tokens.push_back(ev.token);
      }
      o.text += ev.text;
      if (ev.finish != FinishReason::kNone) {
        EXPECT_EQ(o.finish, FinishReason::kNone) << "finished twice: " << ev.request_id;
        o.finish = ev.finish;
      }
    }
  }
  return out;
}

std::vector<int32_t> random_prompt(std::mt19937& rng, int vocab, int len) {
  std::vector<int32_t> p(len);
  for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab - 16));
  return p;
}

TEST(Engine, BatchedGreedyRequestsGiveTheSameTokensAsEachAlone) {
  auto model = tiny();
  std::mt19937 rng(1);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(request("r" + std::to_string(i), random_prompt(rng, 512, 3 + 7 * i), 20));
  std::map<std::string, Outcome> alone;
  for (const auto& r : reqs) {
    EngineOptions o;
    o.threads = 2;
    auto e = Engine::create(model, o).value();
    ASSERT_TRUE(e->add_request(r).ok());
    alone[r.id] = run_all(e.get())[r.id];
  }
  EngineOptions o;
  o.threads = 2;
  o.max_batched_tokens = 24;  // forces chunked prefill beside decodes
  auto e = Engine::create(model, o).value();
  for (const auto& r : reqs) ASSERT_TRUE(e->add_request(r).ok());
  auto batched = run_all(e.get());
  std::set<std::vector<int32_t>> distinct;
  for (const auto& r : reqs) {
    EXPECT_EQ(batched[r.id].tokens, alone[r.id].tokens) << r.id;
    EXPECT_EQ(batched[r.id].tokens.size(), 20u);
    distinct.insert(alone[r.id].tokens);
  }
  // Different prompts continue differently.
  EXPECT_GE(distinct.size(), 6u);
}

TEST(Engine, SeededSamplingIsReproducibleAndSeedsDiffer) {
  auto model = tiny();
  auto run = [&](uint64_t seed, int threads) {
    EngineOptions o;
    o.threads = threads;
    auto e = Engine::create(model, o).value();
    EXPECT_TRUE(e->add_request(request("s", {5, 6, 7, 8}, 32, 1.0f, seed)).ok());
    return run_all(e.get())["s"].tokens;
  };
  auto a = run(42, 1), b = run(42, 2), c = run(43, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Engine, PreemptionUnderBlockPressureNeverChangesTokensOrLeaksBlocks) {
  auto model = tiny();
  std::mt19937 rng(7);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    int len = 1 + static_cast<int>(rng() % 40);
    float temp = (i % 2) ? 0.8f : 0.0f;
    reqs.push_back(request("p" + std::to_string(i), random_prompt(rng, 512, len), 8 + static_cast<int>(rng() % 24),
                           temp, 100 + i));
  }
  // Reference: plenty of blocks, one request at a time.
  std::map<std::string, Outcome> want;
  for (const auto& r : reqs) {
    EngineOptions o;
    o.threads = 1;
    auto e = Engine::create(model, o).value();
    ASSERT_TRUE(e->add_request(r).ok());
    want[r.id] = run_all(e.get())[r.id];
  }
  // Under pressure: 20 blocks of 4 positions for 12 requests of up to 64 tokens each.
  EngineOptions o;
  o.threads = 1;
  o.block_size = 4;
  o.kv_blocks = 20;
  o.max_batched_tokens = 16;
  auto e = Engine::create(model, o).value();
  for (const auto& r : reqs) ASSERT_TRUE(e->add_request(r).ok());
  std::map<std::string, Outcome> got;
  for (int i = 0; e->has_unfinished() && i < 20000; ++i) {
    auto events = e->step();
    ASSERT_TRUE(events.ok());
    for (const auto& ev : *events) {
      got[ev.request_id].tokens.push_back(ev.token);
      if (ev.finish != FinishReason::kNone) got[ev.request_id].finish = ev.finish;
    }
    EngineStats s = e->stats();
    ASSERT_LE(s.kv_blocks_used, s.kv_blocks_total);
  }
  EngineStats s = e->stats();
  EXPECT_GT(s.preemptions_total, 0) << "the workload was meant to force preemption";
  EXPECT_EQ(s.kv_blocks_used, 0) << "blocks leaked";
  EXPECT_EQ(s.running + s.waiting, 0);
  for (const auto& r : reqs) {
    EXPECT_EQ(got[r.id].tokens, want[r.id].tokens) << r.id;
    EXPECT_EQ(got[r.id].finish, FinishReason::kLength);
  }
}

TEST(Engine, CancelFreesBlocksAndReportsAbort) {
  auto model = tiny();
  EngineOptions o;
  o.threads = 1;
  auto e = Engine::create(model, o).value();
  ASSERT_TRUE(e->add_request(request("c", {1, 2, 3, 4, 5}, 100)).ok());
  ASSERT_TRUE(e->step().ok());
  EXPECT_GT(e->stats().kv_blocks_used, 0);
  ASSERT_TRUE(e->cancel("c").ok());
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
  auto out = run_all(e.get());
  EXPECT_EQ(out["c"].finish, FinishReason::kAbort);
  EXPECT_EQ(e->cancel("c").code(), StatusCode::kNotFound);
}

TEST(Engine, PrefillRateIsMeasuredOnLargeStepsOnly) {
  auto model = tiny();
  EngineOptions o;
  o.threads = 1;
  auto e = Engine::create(model, o).value();
  ASSERT_TRUE(e->add_request(request("small", {1, 2, 3}, 4)).ok());
  run_all(e.get());
  EXPECT_EQ(e->stats().prefill_tokens_per_s, 0) << "steps of 3 and 1 tokens are not prefill-sized";
  std::vector<int32_t> prompt;
  for (int i = 0; i < static_cast<int>(kPrefillRateMinTokens) + 8; ++i) prompt.push_back(1 + i % 50);
  ASSERT_TRUE(e->add_request(request("big", prompt, 2)).ok());
  run_all(e.get());
  EXPECT_GT(e->stats().prefill_tokens_per_s, 0);
}

TEST(Engine, ASlowerSpeedStretchesEveryForwardPassAndChangesNoToken) {
  auto model = tiny();
  std::vector<int32_t> prompt;
  for (int i = 0; i < static_cast<int>(kPrefillRateMinTokens) + 8; ++i) prompt.push_back(1 + i % 50);
  auto run = [&](double speed, double* wall_seconds) {
    EngineOptions o;
    o.threads = 1;
    o.speed = speed;
    auto e = Engine::create(model, o).value();
    EXPECT_TRUE(e->add_request(request("greedy", prompt, 12)).ok());
    EXPECT_TRUE(e->add_request(request("sampled", prompt, 12, 0.8f, 5)).ok());
    const auto start = std::chrono::steady_clock::now();
    auto out = run_all(e.get());
    *wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::make_pair(out, e->stats());
  };
  double fast_wall = 0, slow_wall = 0;
  auto [fast, fast_stats] = run(1.0, &fast_wall);
  auto [slow, slow_stats] = run(0.25, &slow_wall);
  EXPECT_EQ(fast["greedy"].tokens, slow["greedy"].tokens);
  EXPECT_EQ(fast["sampled"].tokens, slow["sampled"].tokens);
  EXPECT_EQ(fast_stats.throttle_seconds_total, 0);
  EXPECT_GT(fast_stats.forward_seconds_total, 0);
  // Each pass is followed by a pause of at least 3x its time: the run takes >= 4x its passes.
  ASSERT_GT(slow_stats.forward_seconds_total, 0);
  EXPECT_GE(slow_stats.throttle_seconds_total, 3 * slow_stats.forward_seconds_total * 0.999);
  EXPECT_GE(slow_wall, 4 * slow_stats.forward_seconds_total * 0.999);
  // What migration's auto mode reads is the slower card's rate: prefill steps count their pause.
  // (Expected 4x lower; asserted only lower, as the two runs share a noisy machine.)
  EXPECT_GT(slow_stats.prefill_tokens_per_s, 0);
  EXPECT_LT(slow_stats.prefill_tokens_per_s, fast_stats.prefill_tokens_per_s);
  for (double bad : {0.0, -1.0, 1.5, std::nan("")}) {
    EngineOptions o;
    o.speed = bad;
    auto e = Engine::create(model, o);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("speed"), std::string::npos) << e.status().to_string();
  }
}

TEST(Engine, MaxTokensAndContextLimitEndWithLength) {
  auto model = tiny();
  EngineOptions o;
  o.threads = 1;
  o.max_model_len = 20;
  auto e = Engine::create(model, o).value();
  ASSERT_TRUE(e->add_request(request("short", {1, 2, 3}, 5)).ok());
  ASSERT_TRUE(e->add_request(request("long", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 1000)).ok());
  auto out = run_all(e.get());
  EXPECT_EQ(out["short"].tokens.size(), 5u);
  EXPECT_EQ(out["short"].finish, FinishReason::kLength);
  EXPECT_EQ(out["long"].tokens.size(), 10u);  // 10 prompt + 10 generated = max_model_len
  EXPECT_EQ(out["long"].finish, FinishReason::kLength);
}

TEST(Engine, EosTokenStopsUnlessIgnored) {
  auto model = tiny();
  // Find what greedy decoding emits first, then declare that token a stop token.
  EngineOptions o;
  o.threads = 1;
  auto e = Engine::create(model, o).value();
  ASSERT_TRUE(e->add_request(request("probe", {9, 8, 7}, 4)).ok());
  auto probe = run_all(e.get())["probe"].tokens;
  auto r = request("stop", {9, 8, 7}, 4);
  r.stop.stop_token_ids = {probe[1]};
  ASSERT_TRUE(e->add_request(r).ok());
  auto out = run_all(e.get())["stop"];
  EXPECT_EQ(out.finish, FinishReason::kStop);
  size_t first = std::find(probe.begin(), probe.end(), probe[1]) - probe.begin();
  EXPECT_EQ(out.tokens, std::vector<int32_t>(probe.begin(), probe.begin() + first + 1));
}

TEST(Engine, StopStringEndsTextBeforeIt) {
  auto model = tiny();
  EngineOptions o;
  o.threads = 1;
  auto e = Engine::create(model, o).value();
  auto prompt = model->tokenizer().encode("Migration of the cache");
  ASSERT_TRUE(e->add_request(request("full", prompt, 24)).ok());
  std::string full = run_all(e.get())["full"].text;
  ASSERT_GE(full.size(), 6u);
  // A stop string from an ASCII stretch of the text (U+FFFD in the text stands for raw bytes).
  size_t at = full.size() / 3;
  auto ascii = [&](size_t i) { return i + 3 <= full.size() && (full[i] & 0x80) == 0 && (full[i + 1] & 0x80) == 0 &&
                                      (full[i + 2] & 0x80) == 0; };
  while (at < full.size() && !ascii(at)) ++at;
  ASSERT_TRUE(ascii(at)) << full;
  std::string stop = full.substr(at, 3);
  size_t first = full.find(stop);
  auto r = request("cut", prompt, 24);
  r.stop.stop = {stop};
  ASSERT_TRUE(e->add_request(r).ok());
  auto out = run_all(e.get())["cut"];
  EXPECT_EQ(out.finish, FinishReason::kStop);
  EXPECT_EQ(out.text, full.substr(0, first));
}

TEST(Engine, BadRequestsAreRejectedWithoutQueueingAnything) {
  auto model = tiny();
  EngineOptions o;
  o.threads = 1;
  o.max_model_len = 16;
  auto e = Engine::create(model, o).value();
  auto expect_error = [&](GenerationRequest r, const std::string& needle) {
    Status st = e->add_request(std::move(r));
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  expect_error(request("", {1}, 4), "id is empty");
  expect_error(request("a", {}, 4), "no tokens");
  expect_error(request("a", {1, 99999}, 4), "prompt token 1 = 99999 is outside the vocabulary");
  expect_error(request("a", std::vector<int32_t>(16, 1), 4), "no room to generate");
  expect_error(request("a", {1}, 0), "max_tokens must be >= 1");
  auto bad_temp = request("a", {1}, 4);
  bad_temp.sampling.temperature = -1;
  expect_error(bad_temp, "temperature");
  auto bad_p = request("a", {1}, 4);
  bad_p.sampling.top_p = 0;
  expect_error(bad_p, "top_p");
  EXPECT_FALSE(e->has_unfinished());
  ASSERT_TRUE(e->add_request(request("a", {1}, 2)).ok());
  expect_error(request("a", {1}, 2), "already in use");
}

}  // namespace
}  // namespace hotswap::engine
