// EngineService: the engine on its own thread, and moving running sequences (with their sinks)
// from one service to another while both keep stepping.
#include "agent/server/engine_service.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

// Records what a request receives; thread-safe for the test thread to read.
class RecordingSink : public RequestSink {
 public:
  void on_event(const engine::TokenEvent& ev) override {
    std::lock_guard<std::mutex> lk(mu);
    if (ev.token >= 0) {
      EXPECT_EQ(ev.index, static_cast<int64_t>(tokens.size()));
      tokens.push_back(ev.token);
    }
    if (ev.finish != engine::FinishReason::kNone) finished = true;
  }
  void on_failure(const Status& st) override {
    std::lock_guard<std::mutex> lk(mu);
    failure = st.to_string();
  }
  std::mutex mu;
  std::vector<int32_t> tokens;
  bool finished = false;
  std::string failure;
};

std::unique_ptr<EngineService> make_service(std::shared_ptr<const engine::Model> model) {
  engine::EngineOptions o;
  o.threads = 1;
  o.kv_blocks = 1024;
  return std::make_unique<EngineService>(engine::Engine::create(model, o).value(), EngineServiceOptions{});
}

engine::GenerationRequest request(const std::string& id, std::vector<int32_t> prompt, int max_tokens, float temp) {
  engine::GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.stop.max_tokens = max_tokens;
  r.stop.ignore_eos = true;
  r.sampling.temperature = temp;
  r.seed = 5;
  return r;
}

TEST(EngineService, SequencesMovedBetweenRunningServicesKeepTheirTokens) {
  auto model = engine::Model::load(engine::testing::tiny_model()).value();
  auto a = make_service(model);
  auto b = make_service(model);
  const int n = 4, max_tokens = 400;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) {
    prompts.push_back(model->tokenizer().encode("moving sequence " + std::to_string(i)));
    sinks.push_back(std::make_shared<RecordingSink>());
    ASSERT_TRUE(
        a->submit(request("s" + std::to_string(i), prompts.back(), max_tokens, i % 2 ? 0.8f : 0.0f), sinks.back())
            .ok());
  }
  // Let A generate for a while, then move everything in one engine call per side.
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard<std::mutex> lk(sinks[0]->mu);
      if (sinks[0]->tokens.size() >= 20) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<engine::SequenceSnapshot> snaps;
  std::vector<std::vector<uint8_t>> kvs;
  std::map<std::string, std::shared_ptr<RequestSink>> taken;
  ASSERT_TRUE(a->run_on_engine([&](engine::Engine& e) {
                 std::vector<std::string> ids;
                 for (const auto& info : e.sequences()) {
                   auto snap = e.snapshot(info.request_id).value();
                   std::vector<uint8_t> kv(static_cast<size_t>(e.kv_layout().blocks_for(snap.position)) *
                                           e.kv_layout().block_bytes());
                   HOTSWAP_RETURN_IF_ERROR(
                       e.read_kv_blocks(info.request_id, 0, e.kv_layout().blocks_for(snap.position), kv.data()));
                   HOTSWAP_RETURN_IF_ERROR(e.detach(info.request_id));
                   ids.push_back(info.request_id);
                   snaps.push_back(std::move(snap));
                   kvs.push_back(std::move(kv));
                 }
                 taken = a->take_sinks(ids);
                 return Status();
               }).ok());
  EXPECT_EQ(taken.size(), static_cast<size_t>(n));
  EXPECT_EQ(a->open_requests(), 0);
  ASSERT_TRUE(b->run_on_engine([&](engine::Engine& e) {
                 for (size_t i = 0; i < snaps.size(); ++i) {
                   const auto& snap = snaps[i];
                   HOTSWAP_RETURN_IF_ERROR(e.import_sequence(snap, kvs[i].empty() ? nullptr : kvs[i].data()));
                   b->adopt_sink(snap.request.id, taken.at(snap.request.id));
                 }
                 return Status();
               }).ok());
  EXPECT_EQ(b->open_requests(), n);
  for (int i = 0; i < 2000 && b->open_requests() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(b->open_requests(), 0);
  for (int i = 0; i < n; ++i) {
    std::lock_guard<std::mutex> lk(sinks[i]->mu);
    EXPECT_TRUE(sinks[i]->finished);
    EXPECT_TRUE(sinks[i]->failure.empty()) << sinks[i]->failure;
    auto want = testing::reference_tokens(model, prompts[i], max_tokens, i % 2 ? 0.8f : 0.0f, 5);
    EXPECT_EQ(sinks[i]->tokens, want) << "sequence " << i;
  }
}

TEST(EngineService, RunOnEngineTimesOutWithoutRunningLateWork) {
  auto model = engine::Model::load(engine::testing::tiny_model()).value();
  auto svc = make_service(model);
  std::atomic<bool> blocked{true};
  // Occupy the engine thread, then ask with a short timeout: the second task must not run later.
  std::thread blocker([&] {
    (void)svc->run_on_engine(
        [&](engine::Engine&) {
          while (blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          return Status();
        },
        std::chrono::seconds(10));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  bool ran = false;
  Status st = svc->run_on_engine(
      [&](engine::Engine&) {
        ran = true;
        return Status();
      },
      std::chrono::milliseconds(30));
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  blocked = false;
  blocker.join();
  ASSERT_TRUE(svc->status().ok());  // the engine thread is past the cancelled task
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace hotswap::agent
