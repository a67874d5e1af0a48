// Loading checkpoints, and the forward pass against an independent reference.
#include "agent/engine/model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "agent/engine/engine.h"
#include "tests/agent/engine/reference_forward.h"
#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

// A copy of the tiny model in its own directory, for a test to damage.
std::string copy_of_tiny(const std::string& name) {
  std::string dst = testing::temp_dir(name);
  fs::copy(testing::tiny_model(), dst, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
  return dst;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void write_json(const std::string& path, const json& j) { std::ofstream(path) << j.dump(); }

// Rewrites model.safetensors through `edit`, which may drop, reshape or retype tensors.
void rewrite_weights(const std::string& dir, const std::function<void(std::vector<TensorToWrite>*)>& edit) {
  std::vector<TensorToWrite> tensors;
  {
    auto f = SafetensorsFile::open(dir + "/model.safetensors");
    ASSERT_TRUE(f.ok());
    for (const auto& [name, v] : (*f)->tensors()) {
      TensorToWrite t{name, v.dtype, v.shape, {}};
      t.data.assign(static_cast<const uint8_t*>(v.data), static_cast<const uint8_t*>(v.data) + v.bytes);
      tensors.push_back(std::move(t));
    }
  }
  edit(&tensors);
  std::vector<const TensorToWrite*> ptrs;
  for (const auto& t : tensors) ptrs.push_back(&t);
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", ptrs).ok());
}

std::string load_error(const std::string& dir) {
  auto m = Model::load(dir);
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : m.status().message();
}

TEST(ModelLoad, LoadsEveryPresetShapeAndArchitecture) {
  for (auto arch : {Architecture::kLlama, Architecture::kQwen2}) {
    auto m = Model::load(testing::tiny_model(arch));
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    EXPECT_EQ((*m)->config().architecture, arch);
    EXPECT_EQ((*m)->layers().size(), 4u);
    EXPECT_EQ((*m)->layers()[0].q_bias.data != nullptr, arch == Architecture::kQwen2);
    EXPECT_FALSE((*m)->eos_token_ids().empty());
  }
}

TEST(SyntheticPresets, EachStandsForTheSizeItsNameSays) {
  // Written only where they are needed (the large one is 2 GB in bf16): here, their configs.
  const std::pair<const char*, double> sizes[] = {{"tiny", 1e6}, {"small", 25e6}, {"medium", 0.5e9}, {"large", 1e9}};
  for (const auto& [preset, parameters] : sizes) {
    SyntheticModelSpec spec;
    spec.preset = preset;
    auto c = synthetic_model_config(spec);
    ASSERT_TRUE(c.ok()) << preset << ": " << c.status().to_string();
    EXPECT_GT(c->parameter_count(), 0.7 * parameters) << preset;
    EXPECT_LT(c->parameter_count(), 1.3 * parameters) << preset;
    EXPECT_EQ(c->hidden_size % c->num_attention_heads, 0) << preset;
    EXPECT_EQ(c->num_attention_heads % c->num_key_value_heads, 0) << preset;
  }
  SyntheticModelSpec large;
  large.preset = "large";
  const ModelConfig c = synthetic_model_config(large).value();
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 16);
  EXPECT_EQ(c.num_key_value_heads, 8);
  SyntheticModelSpec bad;
  bad.preset = "huge";
  EXPECT_FALSE(synthetic_model_config(bad).ok());
}

TEST(ModelLoad, MissingTensorIsNamed) {
  std::string dir = copy_of_tiny("missing-tensor");
  rewrite_weights(dir, [](std::vector<TensorToWrite>* t) {
    t->erase(std::remove_if(t->begin(), t->end(),
                            [](const TensorToWrite& x) { return x.name == "model.layers.2.mlp.up_proj.weight"; }),
             t->end());
  });
  std::string msg = load_error(dir);
  EXPECT_NE(msg.find("missing tensor 'model.layers.2.mlp.up_proj.weight'"), std::string::npos) << msg;
}

TEST(ModelLoad, WrongShapeNamesFileTensorAndBothShapes) {
  std::string dir = copy_of_tiny("wrong-shape");
  rewrite_weights(dir, [](std::vector<TensorToWrite>* t) {
    for (auto& x : *t)
      if (x.name == "model.layers.1.self_attn.k_proj.weight") x.shape = {x.shape[1], x.shape[0]};
  });
  std::string msg = load_error(dir);
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.1.self_attn.k_proj.weight' has shape [128, 64], config.json expects [64, 128]"),
            std::string::npos)
      << msg;
}

TEST(ModelLoad, TruncatedWeightsAreDataLoss) {
  std::string dir = copy_of_tiny("truncated");
  std::string path = dir + "/model.safetensors";
  fs::resize_file(path, fs::file_size(path) / 2);
  auto m = Model::load(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(m.status().message().find("model.safetensors: tensor '"), std::string::npos) << m.status().message();
}

TEST(ModelLoad, UnsupportedArchitectureIsNamed) {
  std::string dir = copy_of_tiny("arch");
  json c = read_json(dir + "/config.json");
  c["architectures"] = {"MixtralForCausalLM"};
  write_json(dir + "/config.json", c);
  std::string msg = load_error(dir);
  EXPECT_NE(msg.find("config.json: unsupported architecture 'MixtralForCausalLM'"), std::string::npos) << msg;
}

TEST(ModelLoad, BadConfigValuesAreNamed) {
  std::string dir = copy_of_tiny("config-values");
  json c = read_json(dir + "/config.json");
  c["num_key_value_heads"] = 3;
  write_json(dir + "/config.json", c);
  EXPECT_NE(load_error(dir).find("not a multiple of num_key_value_heads 3"), std::string::npos);
  c["num_key_value_heads"] = 2;
  c.erase("hidden_size");
  write_json(dir + "/config.json", c);
  EXPECT_NE(load_error(dir).find("missing 'hidden_size'"), std::string::npos);
  std::ofstream(dir + "/config.json") << "{not json";
  EXPECT_NE(load_error(dir).find("config.json: not valid JSON"), std::string::npos);
}

TEST(ModelLoad, MismatchedBiasDtypeIsRejected) {
  std::string src = testing::tiny_model(Architecture::kQwen2);
  std::string dir = testing::temp_dir("bias-dtype");
  fs::copy(src, dir, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
  rewrite_weights(dir, [](std::vector<TensorToWrite>* t) {
    for (auto& x : *t)
      if (x.name == "model.layers.0.self_attn.q_proj.bias") {
        x.dtype = DType::kF32;
        x.data.resize(x.data.size() * 2);
      }
  });
  EXPECT_NE(load_error(dir).find("model.layers.0.self_attn.q_proj.bias is F32"), std::string::npos);
}

TEST(ModelLoad, MissingTokenizerIsNamed) {
  std::string dir = copy_of_tiny("no-tokenizer");
  fs::remove(dir + "/tokenizer.json");
  EXPECT_NE(load_error(dir).find("tokenizer.json: missing"), std::string::npos);
}

// The engine's greedy tokens equal those of the naive reference, for both architectures and
// every weight dtype, and its logits agree closely.
class ForwardMatchesReference : public ::testing::TestWithParam<std::tuple<Architecture, DType>> {};

TEST_P(ForwardMatchesReference, GreedyTokensAndLogits) {
  auto [arch, dtype] = GetParam();
  std::string dir = testing::tiny_model(arch, dtype);
  auto model = Model::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  auto ck = SafetensorsCheckpoint::open_dir(dir);
  ASSERT_TRUE(ck.ok());
  testing::ReferenceModel ref((*model)->config(), **ck);

  std::vector<int32_t> prompt = (*model)->tokenizer().encode("The scheduler admits requests");
  ASSERT_GE(prompt.size(), 3u);
  EngineOptions opts;
  opts.threads = 2;
  opts.block_size = 4;  // several blocks even for a short prompt
  auto eng = Engine::create(*model, opts);
  ASSERT_TRUE(eng.ok());
  GenerationRequest r;
  r.id = "a";
  r.prompt = prompt;
  r.sampling.temperature = 0;
  r.stop.max_tokens = 12;
  r.stop.ignore_eos = true;
  ASSERT_TRUE((*eng)->add_request(r).ok());
  std::vector<int32_t> got;
  while ((*eng)->has_unfinished())
    for (const auto& ev : (*eng)->step().value()) got.push_back(ev.token);
  ASSERT_EQ(got.size(), 12u);

  std::vector<int32_t> seq = prompt;
  double min_margin = 1e9;
  for (size_t i = 0; i < got.size(); ++i) {
    auto logits = ref.next_logits(seq);
    int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    std::vector<double> sorted = logits;
    std::sort(sorted.rbegin(), sorted.rend());
    min_margin = std::min(min_margin, sorted[0] - sorted[1]);
    ASSERT_EQ(got[i], best) << "token " << i << " differs from the reference (top-2 margin "
                            << sorted[0] - sorted[1] << ")";
    seq.push_back(best);
  }
  // Logits "far from uniform": the reference's top choice stands clear of the runner-up.
  EXPECT_GT(min_margin, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(AllArchitecturesAndDtypes, ForwardMatchesReference,
                         ::testing::Combine(::testing::Values(Architecture::kLlama, Architecture::kQwen2),
                                            ::testing::Values(DType::kF32, DType::kF16, DType::kBF16)));

TEST(ForwardLogits, MatchReferenceWithinTolerance) {
  std::string dir = testing::tiny_model(Architecture::kQwen2, DType::kF32);
  auto model = Model::load(dir).value();
  auto ck = SafetensorsCheckpoint::open_dir(dir).value();
  testing::ReferenceModel ref(model->config(), *ck);
  std::vector<int32_t> tokens = model->tokenizer().encode("Blocks move between GPUs");
  CpuExecutorOptions eo;
  eo.threads = 1;
  eo.kv_blocks = 8;
  eo.block_size = 16;
  auto ex = CpuExecutor::create(model, eo).value();
  ForwardBatch b;
  for (size_t i = 0; i < tokens.size(); ++i) {
    b.tokens.push_back(tokens[i]);
    b.positions.push_back(static_cast<int32_t>(i));
    b.seq_index.push_back(0);
    b.slots.push_back(static_cast<int64_t>(i));
  }
  b.block_tables = {0, 1};
  b.block_table_stride = 2;
  b.logit_rows = {static_cast<int32_t>(tokens.size() - 1)};
  std::vector<float> logits;
  ASSERT_TRUE(ex->forward(b, &logits).ok());
  auto want = ref.next_logits(tokens);
  double max_abs = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(logits[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  EXPECT_LT(max_abs, 1e-3 * std::max(1.0, scale)) << "scale " << scale;
  // Far from uniform: the logits spread over several units.
  EXPECT_GT(scale, 3.0);
}

}  // namespace
}  // namespace hotswap::engine
