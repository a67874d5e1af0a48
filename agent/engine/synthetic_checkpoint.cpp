#include "agent/engine/synthetic_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/engine/bpe_trainer.h"
#include "agent/engine/safetensors.h"
#include "agent/engine/synthetic_corpus.h"

namespace hotswap::engine {

namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

namespace {

struct Preset {
  const char* name;
  int vocab, hidden, intermediate, layers, heads, kv_heads, max_pos;
  bool tie;
  size_t corpus_bytes;
  int64_t shard_bytes;
};

constexpr Preset kPresets[] = {
    {"tiny", 512, 128, 384, 4, 4, 2, 2048, true, 192 << 10, 0},
    {"small", 2048, 512, 1408, 8, 8, 4, 4096, false, 512 << 10, 0},
    {"medium", 4096, 1024, 5504, 24, 16, 2, 4096, false, 1 << 20, 400ll << 20},
    // Llama-3.2-1B's shape (hidden 2048, MLP 8192, 16 layers, 32 heads over 8 KV heads) with a
    // smaller vocabulary and a 32k context: ~1.0B parameters, the GPU benchmarks' model.
    {"large", 8192, 2048, 8192, 16, 32, 8, 32768, true, 2 << 20, 1ll << 30},
};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A tensor of N(mean, std^2) values, deterministic in (seed, name).
TensorToWrite random_tensor(const std::string& name, std::vector<int64_t> shape, DType dtype, uint64_t seed,
                            double mean, double stddev) {
  TensorToWrite t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  t.data.resize(static_cast<size_t>(n) * kernels::dtype_size(dtype));
  uint64_t state = hash_name(name, seed);
  for (int64_t i = 0; i < n; i += 2) {
    // Box-Muller on two 53-bit uniforms.
    double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = static_cast<double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
    double r = std::sqrt(-2.0 * std::log(u1));
    double z[2] = {r * std::cos(2 * M_PI * u2), r * std::sin(2 * M_PI * u2)};
    for (int k = 0; k < 2 && i + k < n; ++k)
      kernels::store_from_f32(t.data.data(), dtype, static_cast<size_t>(i + k), static_cast<float>(mean + stddev * z[k]));
  }
  return t;
}

Status write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  if (!out) return unavailable(path.string() + ": cannot create");
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return unavailable(path.string() + ": write failed");
  return Status();
}

const Preset* find_preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return &p;
  return nullptr;
}

}  // namespace

StatusOr<ModelConfig> synthetic_model_config(const SyntheticModelSpec& spec) {
  const Preset* p = find_preset(spec.preset);
  if (p == nullptr) return invalid_argument("unknown preset '" + spec.preset + "' (presets: tiny, small, medium)");
  ModelConfig c;
  c.architecture = spec.architecture;
  c.vocab_size = p->vocab;
  c.hidden_size = p->hidden;
  c.intermediate_size = p->intermediate;
  c.num_hidden_layers = p->layers;
  c.num_attention_heads = p->heads;
  c.num_key_value_heads = p->kv_heads;
  c.head_dim = p->hidden / p->heads;
  c.max_position_embeddings = p->max_pos;
  bool qwen = spec.architecture == Architecture::kQwen2;
  c.rms_norm_eps = qwen ? 1e-6f : 1e-5f;
  c.rope_theta = qwen ? 1000000.0f : 500000.0f;
  // Small Qwen2 models tie the LM head to the embeddings (as Qwen2-0.5B does); Llama unties
  // them. Tests cover both paths with the tiny preset.
  c.tie_word_embeddings = p->tie && qwen;
  c.attention_bias = qwen;
  c.torch_dtype = spec.dtype;
  return c;
}

Status write_synthetic_checkpoint(const SyntheticModelSpec& spec, const std::string& out_dir) {
  HOTSWAP_ASSIGN_OR_RETURN(ModelConfig c, synthetic_model_config(spec));
  const Preset& preset = *find_preset(spec.preset);
  const bool qwen = spec.architecture == Architecture::kQwen2;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return unavailable(out_dir + ": cannot create directory: " + ec.message());

  // Tokenizer: special tokens follow the family's conventions (Llama 3 / Qwen2 chat markers).
  std::vector<std::string> specials =
      qwen ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
           : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "<|eot_id|>"};
  BpeTrainOptions topt;
  topt.vocab_size = c.vocab_size;
  topt.special_tokens = specials;
  std::string corpus = synthetic_corpus(spec.seed, preset.corpus_bytes);
  HOTSWAP_ASSIGN_OR_RETURN(json tok, train_byte_level_bpe(corpus, topt));
  auto special_id = [&](const std::string& s) -> int32_t {
    for (const auto& t : tok["added_tokens"])
      if (t["content"] == s) return t["id"].get<int32_t>();
    return -1;
  };
  std::string bos = qwen ? "" : "<|begin_of_text|>";
  std::string eos = qwen ? "<|im_end|>" : "<|end_of_text|>";
  int32_t eos_id = special_id(eos);
  int32_t alt_eos_id = special_id(qwen ? "<|endoftext|>" : "<|eot_id|>");
  if (eos_id < 0 || alt_eos_id < 0) return internal_error("trained tokenizer lacks its special tokens");
  if (!qwen) {
    int32_t bos_id = special_id(bos);
    c.bos_token_ids = {bos_id};
    tok["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}},
    };
  } else {
    c.bos_token_ids = {alt_eos_id};
  }
  c.eos_token_ids = {eos_id};
  // Token ids beyond the trained vocabulary are padding rows, as in real checkpoints.
  if (tok["model"]["vocab"].size() + 0 > static_cast<size_t>(c.vocab_size))
    return internal_error("trained tokenizer is larger than vocab_size");

  HOTSWAP_RETURN_IF_ERROR(write_json(fs::path(out_dir) / "config.json", c.to_json()));
  HOTSWAP_RETURN_IF_ERROR(write_json(fs::path(out_dir) / "tokenizer.json", tok));
  json gen = {{"eos_token_id", {eos_id, alt_eos_id}}, {"do_sample", false}, {"transformers_version", "4.45.0"}};
  if (!c.bos_token_ids.empty()) gen["bos_token_id"] = c.bos_token_ids[0];
  HOTSWAP_RETURN_IF_ERROR(write_json(fs::path(out_dir) / "generation_config.json", gen));
  std::string chat_template =
      qwen ? "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
             "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
           : "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
             "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
             "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  json tok_config = {
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"bos_token", qwen ? json(nullptr) : json(bos)},
      {"eos_token", eos},
      {"pad_token", qwen ? "<|endoftext|>" : "<|end_of_text|>"},
      {"add_bos_token", !qwen},
      {"add_eos_token", false},
      {"model_max_length", c.max_position_embeddings},
      {"clean_up_tokenization_spaces", false},
      {"chat_template", chat_template},
  };
  HOTSWAP_RETURN_IF_ERROR(write_json(fs::path(out_dir) / "tokenizer_config.json", tok_config));

  // Weights. Scales keep every residual contribution near unit size, and the LM head wide
  // enough that the top logit stands well clear of the rest.
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t Q = int64_t{c.num_attention_heads} * c.head_dim, KV = int64_t{c.num_key_value_heads} * c.head_dim;
  const double in_h = 1.0 / std::sqrt(static_cast<double>(H));
  struct Spec {
    std::string name;
    std::vector<int64_t> shape;
    double mean, stddev;
  };
  std::vector<Spec> specs;
  specs.push_back({"model.embed_tokens.weight", {V, H}, 0.0, 1.0});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {H}, 1.0, 0.1});
    specs.push_back({p + "self_attn.q_proj.weight", {Q, H}, 0.0, 2.0 * in_h});
    specs.push_back({p + "self_attn.k_proj.weight", {KV, H}, 0.0, 2.0 * in_h});
    specs.push_back({p + "self_attn.v_proj.weight", {KV, H}, 0.0, in_h});
    if (qwen) {
      specs.push_back({p + "self_attn.q_proj.bias", {Q}, 0.0, 0.1});
      specs.push_back({p + "self_attn.k_proj.bias", {KV}, 0.0, 0.1});
      specs.push_back({p + "self_attn.v_proj.bias", {KV}, 0.0, 0.1});
    }
    specs.push_back({p + "self_attn.o_proj.weight", {H, Q}, 0.0, 0.5 / std::sqrt(static_cast<double>(Q))});
    specs.push_back({p + "post_attention_layernorm.weight", {H}, 1.0, 0.1});
    specs.push_back({p + "mlp.gate_proj.weight", {I, H}, 0.0, in_h});
    specs.push_back({p + "mlp.up_proj.weight", {I, H}, 0.0, in_h});
    specs.push_back({p + "mlp.down_proj.weight", {H, I}, 0.0, 0.5 / std::sqrt(static_cast<double>(I))});
  }
  specs.push_back({"model.norm.weight", {H}, 1.0, 0.1});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, H}, 0.0, 4.0 * in_h});

  int64_t shard_limit = spec.max_shard_bytes > 0 ? spec.max_shard_bytes : preset.shard_bytes;
  // Group tensors into shards in order.
  std::vector<std::vector<size_t>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = static_cast<int64_t>(kernels::dtype_size(spec.dtype));
    for (int64_t d : specs[i].shape) n *= d;
    if (shard_limit > 0 && shard_bytes > 0 && shard_bytes + n > shard_limit) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += n;
    total_bytes += n;
  }
  bool sharded = shards.size() > 1;
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::string file = sharded ? name : "model.safetensors";
    std::vector<TensorToWrite> tensors(shards[s].size());
    // Generate this shard's tensors on all cores: each is deterministic in its own name.
    std::vector<std::thread> threads;
    unsigned n_threads = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned t = 0; t < n_threads; ++t) {
      threads.emplace_back([&, t] {
        for (size_t k = t; k < tensors.size(); k += n_threads) {
          const Spec& sp = specs[shards[s][k]];
          tensors[k] = random_tensor(sp.name, sp.shape, spec.dtype, spec.seed, sp.mean, sp.stddev);
        }
      });
    }
    for (auto& th : threads) th.join();
    std::vector<const TensorToWrite*> ptrs;
    for (const auto& t : tensors) {
      ptrs.push_back(&t);
      weight_map[t.name] = file;
    }
    HOTSWAP_RETURN_IF_ERROR(write_safetensors((fs::path(out_dir) / file).string(), ptrs, {{"format", "pt"}}));
  }
  if (sharded) {
    json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    HOTSWAP_RETURN_IF_ERROR(write_json(fs::path(out_dir) / "model.safetensors.index.json", index));
  } else {
    fs::remove(fs::path(out_dir) / "model.safetensors.index.json", ec);
  }
  return Status();
}

}  // namespace hotswap::engine
