// The engine's CUDA backend (agent/engine/cuda_backend.h) against its CPU twin, on a GPU:
// greedy token ids identical in f32, bf16 logits within a stated tolerance, KV blocks in and
// out bit for bit, a KV migration between two CUDA engines that continues exactly, and the
// device-side index checks. Every test skips, saying so, where no GPU is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "agent/engine/cuda_backend.h"
#include "agent/engine/engine.h"
#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

using kernels::DType;

class EngineCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_backend_built()) GTEST_SKIP() << "SKIPPED (no GPU): this agent was built without the CUDA backend";
    if (cuda_device_count() == 0) GTEST_SKIP() << "SKIPPED (no GPU): no CUDA device is visible to this process";
  }
};

// A checkpoint of `preset` in `dtype`, made once per binary.
std::string model_dir(const std::string& preset, DType dtype) {
  static std::map<std::string, std::string> made;
  const std::string key = preset + "-" + kernels::dtype_name(dtype);
  if (auto it = made.find(key); it != made.end()) return it->second;
  SyntheticModelSpec spec;
  spec.preset = preset;
  spec.dtype = dtype;
  spec.seed = 11;
  const std::string dir = testing::temp_dir("cuda-" + key);
  const Status st = write_synthetic_checkpoint(spec, dir);
  EXPECT_TRUE(st.ok()) << st.to_string();
  made[key] = dir;
  return dir;
}

std::unique_ptr<Engine> make_engine(std::shared_ptr<const Model> model, Device device) {
  EngineOptions o;
  o.device = device;
  o.threads = 2;
  o.block_size = 16;
  o.kv_blocks = 256;
  auto e = Engine::create(std::move(model), o);
  EXPECT_TRUE(e.ok()) << e.status().to_string();
  return e.ok() ? std::move(*e) : nullptr;
}

std::vector<GenerationRequest> greedy_workload(const Model& model, int max_tokens) {
  const char* prompts[] = {"The cache moves between cards", "GPU", "Replicas drain from the node while tokens stream",
                           "A longer prompt about a scheduler that admits requests, preempts the newest, and "
                           "keeps every sequence's blocks in one pool"};
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    r.id = "g" + std::to_string(i);
    r.prompt = model.tokenizer().encode(prompts[i]);
    r.stop.max_tokens = max_tokens;
    r.stop.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    r.seed = 7 + i;
    reqs.push_back(r);
  }
  return reqs;
}

std::map<std::string, std::vector<int32_t>> run(Engine* e, const std::vector<GenerationRequest>& reqs) {
  for (const auto& r : reqs) EXPECT_TRUE(e->add_request(r).ok());
  std::map<std::string, std::vector<int32_t>> tokens;
  for (int i = 0; e->has_unfinished() && i < 10000; ++i) {
    auto events = e->step();
    EXPECT_TRUE(events.ok()) << events.status().to_string();
    if (!events.ok()) break;
    for (const auto& ev : *events)
      if (ev.token >= 0) tokens[ev.request_id].push_back(ev.token);
  }
  return tokens;
}

// One prefill of `prompt` as sequence 0 in blocks 0, 1, ... with every row's logits.
ForwardBatch prefill_batch(const std::vector<int32_t>& prompt, int block_size) {
  ForwardBatch b;
  const int64_t n = static_cast<int64_t>(prompt.size());
  b.block_table_stride = (n + block_size - 1) / block_size;
  for (int64_t p = 0; p < n; ++p) {
    b.tokens.push_back(prompt[p]);
    b.positions.push_back(static_cast<int32_t>(p));
    b.seq_index.push_back(0);
    b.slots.push_back(p);
    b.logit_rows.push_back(static_cast<int32_t>(p));
  }
  for (int64_t i = 0; i < b.block_table_stride; ++i) b.block_tables.push_back(static_cast<int32_t>(i));
  return b;
}

TEST_F(EngineCudaTest, GreedyTokenIdsOnSmallMatchTheCpuInF32) {
  auto model = Model::load(model_dir("small", DType::kF32)).value();
  const auto reqs = greedy_workload(*model, 48);
  auto cpu = make_engine(model, Device::kCpu);
  auto gpu = make_engine(model, Device::kCuda);
  ASSERT_TRUE(cpu && gpu);
  EXPECT_STREQ(gpu->backend_name(), "cuda");
  const auto want = run(cpu.get(), reqs);
  const auto got = run(gpu.get(), reqs);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, w] : want) {
    ASSERT_EQ(w.size(), 48u) << id;
    EXPECT_EQ(got.at(id), w) << id;
  }
}

TEST_F(EngineCudaTest, Bf16LogitsMatchTheCpuWithinTolerance) {
  // Both backends read bf16 weights and compute in f32; only summation order differs. Stated
  // tolerance: every logit within 1e-3 of the CPU's, relative to the row's largest magnitude.
  auto model = Model::load(model_dir("small", DType::kBF16)).value();
  const std::vector<int32_t> prompt = model->tokenizer().encode("Tokens stream to clients while the cache moves");
  CpuExecutorOptions co;
  co.threads = 2;
  co.kv_blocks = 16;
  auto cpu = CpuExecutor::create(model, co);
  ASSERT_TRUE(cpu.ok()) << cpu.status().to_string();
  CudaExecutorOptions go;
  go.kv_blocks = 16;
  auto gpu = create_cuda_executor(model, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  const ForwardBatch b = prefill_batch(prompt, co.block_size);
  std::vector<float> want, got;
  ASSERT_TRUE((*cpu)->forward(b, &want).ok());
  const Status st = (*gpu)->forward(b, &got);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_EQ(got.size(), want.size());
  const int64_t vocab = model->config().vocab_size;
  for (size_t r = 0; r < prompt.size(); ++r) {
    float scale = 0, worst = 0;
    for (int64_t i = 0; i < vocab; ++i) scale = std::max(scale, std::fabs(want[r * vocab + i]));
    for (int64_t i = 0; i < vocab; ++i) worst = std::max(worst, std::fabs(got[r * vocab + i] - want[r * vocab + i]));
    EXPECT_LE(worst, 1e-3f * scale) << "row " << r << ": largest |logit| " << scale;
  }
}

TEST_F(EngineCudaTest, KvBlocksGoInAndComeOutBitForBit) {
  auto model = Model::load(model_dir("small", DType::kBF16)).value();
  for (DType kv : {DType::kF32, DType::kBF16, DType::kF16}) {
    CudaExecutorOptions go;
    go.kv_blocks = 64;
    go.kv_dtype = kv;
    auto gpu = create_cuda_executor(model, go);
    ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
    const size_t block_bytes = (*gpu)->kv_layout().block_bytes();
    const std::vector<int32_t> ids = {5, 63, 0, 17, 18};
    std::vector<uint8_t> in(ids.size() * block_bytes), out(in.size());
    std::mt19937 rng(3);
    // Blocks move as bytes, never as values: any pattern must survive.
    for (auto& byte : in) byte = static_cast<uint8_t>(rng());
    ASSERT_TRUE((*gpu)->write_kv_blocks(ids.data(), static_cast<int64_t>(ids.size()), in.data()).ok());
    ASSERT_TRUE((*gpu)->read_kv_blocks(ids.data(), static_cast<int64_t>(ids.size()), out.data()).ok());
    EXPECT_EQ(out, in) << kernels::dtype_name(kv);
    // In another order: each block comes back where it is named.
    const std::vector<int32_t> two = {17, 5};
    std::vector<uint8_t> some(2 * block_bytes);
    ASSERT_TRUE((*gpu)->read_kv_blocks(two.data(), 2, some.data()).ok());
    EXPECT_TRUE(std::equal(some.begin(), some.begin() + block_bytes, in.begin() + 3 * block_bytes));
    EXPECT_TRUE(std::equal(some.begin() + block_bytes, some.end(), in.begin()));
  }
}

TEST_F(EngineCudaTest, BadBlockIdsAreErrorsThatWriteNothing) {
  auto model = Model::load(model_dir("small", DType::kBF16)).value();
  CudaExecutorOptions go;
  go.kv_blocks = 8;
  auto gpu = create_cuda_executor(model, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  const size_t block_bytes = (*gpu)->kv_layout().block_bytes();
  std::vector<uint8_t> zeros(2 * block_bytes, 0), ones(2 * block_bytes, 1), back(2 * block_bytes);
  const std::vector<int32_t> good = {1, 2};
  ASSERT_TRUE((*gpu)->write_kv_blocks(good.data(), 2, zeros.data()).ok());
  const std::vector<int32_t> outside = {1, 8}, twice = {2, 2};
  Status st = (*gpu)->write_kv_blocks(outside.data(), 2, ones.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("block 8 is outside the pool [0, 8)"), std::string::npos) << st.message();
  st = (*gpu)->write_kv_blocks(twice.data(), 2, ones.data());
  EXPECT_NE(st.message().find("block 2 appears more than once"), std::string::npos) << st.message();
  st = (*gpu)->read_kv_blocks(outside.data(), 2, back.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE((*gpu)->read_kv_blocks(good.data(), 2, back.data()).ok());
  EXPECT_EQ(back, zeros);
}

TEST_F(EngineCudaTest, ABadTokenIdIsADeviceSideErrorAndTheNextPassWorks) {
  auto model = Model::load(model_dir("small", DType::kBF16)).value();
  CudaExecutorOptions go;
  go.kv_blocks = 16;
  auto gpu = create_cuda_executor(model, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  std::vector<int32_t> prompt = model->tokenizer().encode("GPU");
  ForwardBatch bad = prefill_batch(prompt, go.block_size);
  bad.tokens[0] = model->config().vocab_size;
  std::vector<float> logits;
  const Status st = (*gpu)->forward(bad, &logits);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("embedding"), std::string::npos) << st.message();
  const Status again = (*gpu)->forward(prefill_batch(prompt, go.block_size), &logits);
  EXPECT_TRUE(again.ok()) << again.to_string();
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST_F(EngineCudaTest, KvMigrationBetweenTwoCudaEnginesContinuesExactly) {
  auto model = Model::load(model_dir("small", DType::kBF16)).value();
  auto reqs = greedy_workload(*model, 40);
  reqs[1].sampling.temperature = 0.8f;  // seeded sampling too: it depends only on (seed, step)
  reqs[3].sampling.top_p = 0.9f;
  reqs[3].sampling.temperature = 0.7f;
  auto whole = make_engine(model, Device::kCuda);
  ASSERT_TRUE(whole);
  const auto want = run(whole.get(), reqs);

  auto a = make_engine(model, Device::kCuda);
  auto b = make_engine(model, Device::kCuda);
  ASSERT_TRUE(a && b);
  for (const auto& r : reqs) ASSERT_TRUE(a->add_request(r).ok());
  std::map<std::string, std::vector<int32_t>> got;
  for (int i = 0; i < 12; ++i)
    for (const auto& ev : a->step().value())
      if (ev.token >= 0) got[ev.request_id].push_back(ev.token);
  for (const auto& info : a->sequences()) {
    auto snap = a->snapshot(info.request_id);
    ASSERT_TRUE(snap.ok());
    const int64_t n = a->kv_layout().blocks_for(snap->position);
    std::vector<uint8_t> kv(static_cast<size_t>(n) * a->kv_layout().block_bytes());
    ASSERT_TRUE(a->read_kv_blocks(info.request_id, 0, n, kv.data()).ok());
    ASSERT_TRUE(a->detach(info.request_id).ok());
    const Status st = b->import_sequence(*snap, kv.data());
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  for (int i = 0; b->has_unfinished() && i < 10000; ++i)
    for (const auto& ev : b->step().value())
      if (ev.token >= 0) got[ev.request_id].push_back(ev.token);
  EXPECT_EQ(b->stats().prompt_tokens_total, 0);  // decoded from the KV it received
  for (const auto& [id, w] : want) EXPECT_EQ(got[id], w) << id;
}

}  // namespace
}  // namespace hotswap::engine
