// Moving sequences between engines: snapshot + KV blocks out of one, import into another, and
// the tokens and text continue exactly as if nothing had happened.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "agent/engine/engine.h"
#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::kNone;
};

void collect(const std::vector<TokenEvent>& events, std::map<std::string, Collected>* out) {
  for (const auto& ev : events) {
    auto& c = (*out)[ev.request_id];
    if (ev.token >= 0) {
      EXPECT_EQ(ev.index, static_cast<int64_t>(c.tokens.size())) << ev.request_id;
      c.tokens.push_back(ev.token);
    }
    c.text += ev.text;
    if (ev.finish != FinishReason::kNone) c.finish = ev.finish;
  }
}

void run_to_end(Engine* e, std::map<std::string, Collected>* out) {
  for (int i = 0; e->has_unfinished() && i < 20000; ++i) {
    auto events = e->step();
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    collect(*events, out);
  }
  ASSERT_FALSE(e->has_unfinished());
}

std::vector<GenerationRequest> workload(const Model& model) {
  std::vector<GenerationRequest> reqs;
  const char* prompts[] = {"The cache moves", "Replicas drain from the node", "GPU", "Tokens stream to clients",
                           "A long prompt about the scheduler that admits requests and preempts the newest"};
  for (int i = 0; i < 5; ++i) {
    GenerationRequest r;
    r.id = "m" + std::to_string(i);
    r.prompt = model.tokenizer().encode(prompts[i]);
    r.stop.max_tokens = 24 + 3 * i;
    r.stop.ignore_eos = true;
    r.sampling.temperature = i % 2 ? 0.9f : 0.0f;
    r.sampling.top_p = i == 3 ? 0.8f : 1.0f;
    r.seed = 40 + i;
    reqs.push_back(r);
  }
  return reqs;
}

std::unique_ptr<Engine> make_engine(std::shared_ptr<const Model> model, int max_batched_tokens = 512) {
  EngineOptions o;
  o.threads = 2;
  o.block_size = 4;
  o.kv_blocks = 512;
  o.max_batched_tokens = max_batched_tokens;
  return Engine::create(model, o).value();
}

// Runs `steps` steps on A, moves every sequence to B (with or without KV), finishes on B.
std::map<std::string, Collected> migrate_midway(std::shared_ptr<const Model> model, int steps, bool with_kv,
                                                int source_budget = 512, int64_t* target_prefill = nullptr) {
  auto a = make_engine(model, source_budget);
  auto b = make_engine(model);
  for (const auto& r : workload(*model)) EXPECT_TRUE(a->add_request(r).ok());
  std::map<std::string, Collected> got;
  for (int i = 0; i < steps; ++i) collect(a->step().value(), &got);
  for (const auto& info : a->sequences()) {
    auto snap = a->snapshot(info.request_id);
    EXPECT_TRUE(snap.ok());
    std::vector<uint8_t> kv;
    if (with_kv && snap->position > 0) {
      int64_t n = a->kv_layout().blocks_for(snap->position);
      kv.resize(static_cast<size_t>(n) * a->kv_layout().block_bytes());
      EXPECT_TRUE(a->read_kv_blocks(info.request_id, 0, n, kv.data()).ok());
    }
    EXPECT_TRUE(a->detach(info.request_id).ok());
    Status st = b->import_sequence(*snap, kv.empty() ? nullptr : kv.data());
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  EXPECT_FALSE(a->has_unfinished());
  EXPECT_EQ(a->stats().kv_blocks_used, 0);
  run_to_end(b.get(), &got);
  if (target_prefill) *target_prefill = b->stats().prompt_tokens_total;
  return got;
}

std::map<std::string, Collected> unmigrated(std::shared_ptr<const Model> model) {
  auto e = make_engine(model);
  for (const auto& r : workload(*model)) EXPECT_TRUE(e->add_request(r).ok());
  std::map<std::string, Collected> got;
  run_to_end(e.get(), &got);
  return got;
}

void expect_same(const std::map<std::string, Collected>& got, const std::map<std::string, Collected>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, w] : want) {
    const auto& g = got.at(id);
    EXPECT_EQ(g.tokens, w.tokens) << id;
    EXPECT_EQ(g.text, w.text) << id;
    EXPECT_EQ(g.finish, w.finish) << id;
  }
}

TEST(EngineMigration, KvMigrationContinuesExactly) {
  auto model = Model::load(testing::tiny_model()).value();
  auto want = unmigrated(model);
  for (int steps : {1, 5, 12}) expect_same(migrate_midway(model, steps, /*with_kv=*/true), want);
  // After 12 steps every prompt was prefilled on the source: the target prefills nothing, the
  // KV it received is what it decodes from.
  int64_t target_prefill = -1;
  expect_same(migrate_midway(model, 12, true, 512, &target_prefill), want);
  EXPECT_EQ(target_prefill, 0);
  migrate_midway(model, 12, false, 512, &target_prefill);
  EXPECT_GT(target_prefill, 0);
}

TEST(EngineMigration, KvStagedInThePoolBlockByBlockContinuesExactly) {
  // The target's path: blocks arrive one by one into B's pool (stage_kv) before the sequence
  // exists there, then import_staged makes them its cache.
  auto model = Model::load(testing::tiny_model()).value();
  auto want = unmigrated(model);
  auto a = make_engine(model);
  auto b = make_engine(model);
  for (const auto& r : workload(*model)) ASSERT_TRUE(a->add_request(r).ok());
  std::map<std::string, Collected> got;
  for (int i = 0; i < 9; ++i) collect(a->step().value(), &got);
  const int64_t bb = static_cast<int64_t>(a->kv_layout().block_bytes());
  for (const auto& info : a->sequences()) {
    auto snap = a->snapshot(info.request_id).value();
    const int64_t n = a->kv_layout().blocks_for(snap.position);
    std::vector<uint8_t> block(static_cast<size_t>(bb));
    for (int64_t k = n - 1; k >= 0; --k) {  // any order: the last first grows the reservation at once
      ASSERT_TRUE(a->read_kv_blocks(info.request_id, k, 1, block.data()).ok());
      ASSERT_TRUE(b->stage_kv(info.request_id, k, 1, block.data()).ok());
    }
    EXPECT_EQ(b->staged_blocks(info.request_id), n);
    ASSERT_TRUE(a->detach(info.request_id).ok());
    Status st = b->import_staged(snap);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(b->staged_blocks(info.request_id), 0);
  }
  run_to_end(b.get(), &got);
  expect_same(got, want);
  EXPECT_EQ(b->stats().kv_blocks_used, 0);
}

TEST(EngineMigration, StagingRefusesWhatDoesNotFitAndDropFreesIt) {
  auto model = Model::load(testing::tiny_model()).value();
  EngineOptions o;
  o.threads = 1;
  o.block_size = 4;
  o.kv_blocks = 8;
  auto e = Engine::create(model, o).value();
  std::vector<uint8_t> data(static_cast<size_t>(e->kv_layout().block_bytes()) * 8, 0);
  ASSERT_TRUE(e->stage_kv("x", 0, 6, data.data()).ok());
  EXPECT_EQ(e->stats().kv_blocks_used, 6);
  Status st = e->stage_kv("y", 0, 3, data.data());
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.to_string();
  EXPECT_EQ(e->staged_blocks("y"), 0);
  EXPECT_EQ(e->stats().kv_blocks_used, 6);
  EXPECT_EQ(e->stage_kv("x", -1, 1, data.data()).code(), StatusCode::kInvalidArgument);
  SequenceSnapshot none;
  none.request.id = "z";
  EXPECT_EQ(e->import_staged(none).code(), StatusCode::kFailedPrecondition);
  e->drop_staged("x");
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
  EXPECT_EQ(e->staged_blocks("x"), 0);
}

TEST(EngineMigration, RecomputeMigrationContinuesExactly) {
  auto model = Model::load(testing::tiny_model()).value();
  auto want = unmigrated(model);
  for (int steps : {1, 7}) expect_same(migrate_midway(model, steps, /*with_kv=*/false), want);
}

TEST(EngineMigration, SequencesMidPrefillAndStillQueuedMoveToo) {
  // A budget of 8 tokens a step: after two steps some prompts are half prefilled and some
  // requests have not been admitted at all.
  auto model = Model::load(testing::tiny_model()).value();
  auto want = unmigrated(model);
  expect_same(migrate_midway(model, 2, /*with_kv=*/true, /*source_budget=*/8), want);
}

TEST(EngineMigration, ImportErrorsLeaveTheEngineUnchanged) {
  auto model = Model::load(testing::tiny_model()).value();
  auto a = make_engine(model);
  auto req = workload(*model)[0];
  ASSERT_TRUE(a->add_request(req).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->step().ok());
  SequenceSnapshot snap = a->snapshot(req.id).value();
  std::vector<uint8_t> kv(static_cast<size_t>(a->kv_layout().blocks_for(snap.position)) * a->kv_layout().block_bytes());
  ASSERT_TRUE(a->read_kv_blocks(req.id, 0, a->kv_layout().blocks_for(snap.position), kv.data()).ok());

  EXPECT_EQ(a->import_sequence(snap, kv.data()).code(), StatusCode::kInvalidArgument);  // id in use
  SequenceSnapshot bad = snap;
  bad.request.id = "other";
  bad.generated.push_back(1 << 20);
  EXPECT_NE(a->import_sequence(bad, kv.data()).message().find("outside the vocabulary"), std::string::npos);
  bad = snap;
  bad.request.id = "other";
  bad.request.seed.reset();
  EXPECT_FALSE(a->import_sequence(bad, kv.data()).ok());

  // Room for one copy of the sequence's blocks but not two.
  const int64_t need = a->kv_layout().blocks_for(snap.position);
  EngineOptions tight;
  tight.threads = 1;
  tight.block_size = 4;
  tight.kv_blocks = 2 * need - 1;
  auto small = Engine::create(model, tight).value();
  ASSERT_TRUE(small->import_sequence(snap, kv.data()).ok());
  SequenceSnapshot second = snap;
  second.request.id = "second";
  Status st = small->import_sequence(second, kv.data());
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.to_string();
  EXPECT_EQ(small->stats().kv_blocks_used, need);
  EXPECT_EQ(small->sequences().size(), 1u);
  // Without KV it is queued for recompute instead, and both finish.
  EXPECT_TRUE(small->import_sequence(second, nullptr).ok());
  // Events continue the generated-token indices where the source left them.
  std::map<std::string, Collected> got;
  got[req.id].tokens = snap.generated;
  got["second"].tokens = snap.generated;
  run_to_end(small.get(), &got);
  EXPECT_EQ(got["second"].tokens, got[req.id].tokens);
  EXPECT_GT(got[req.id].tokens.size(), snap.generated.size());
  EXPECT_EQ(got["second"].finish, FinishReason::kLength);  // this engine's small context ends them
  EXPECT_EQ(a->read_kv_blocks(req.id, 0, 1000, kv.data()).code(), StatusCode::kInvalidArgument);
}

TEST(EngineMigration, PreemptionBumpsTheKvEpoch) {
  auto model = Model::load(testing::tiny_model()).value();
  EngineOptions o;
  o.threads = 1;
  o.block_size = 4;
  o.kv_blocks = 12;
  auto e = Engine::create(model, o).value();
  for (auto r : workload(*model)) ASSERT_TRUE(e->add_request(r).ok());
  std::map<std::string, int64_t> epochs;
  for (int i = 0; i < 200 && e->has_unfinished(); ++i) {
    ASSERT_TRUE(e->step().ok());
    for (const auto& s : e->sequences()) epochs[s.request_id] = std::max(epochs[s.request_id], e->snapshot(s.request_id)->kv_epoch);
  }
  ASSERT_GT(e->stats().preemptions_total, 0);
  int64_t total = 0;
  for (const auto& [id, ep] : epochs) total += ep;
  EXPECT_GT(total, 0);
}

}  // namespace
}  // namespace hotswap::engine
