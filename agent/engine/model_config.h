// config.json of a Hugging Face causal LM, for the architectures the engine runs:
// LlamaForCausalLM and Qwen2ForCausalLM (the same decoder; Qwen2 adds q/k/v biases).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "kernels/dtype.h"

namespace hotswap::engine {

enum class Architecture { kLlama, kQwen2 };

const char* architecture_name(Architecture a);  // "LlamaForCausalLM", "Qwen2ForCausalLM"

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (always for Qwen2)
  kernels::DType torch_dtype = kernels::DType::kBF16;
  std::vector<int32_t> bos_token_ids;
  std::vector<int32_t> eos_token_ids;

  // Parses and validates; `source` names the file in errors.
  static StatusOr<ModelConfig> from_json(const nlohmann::json& j, const std::string& source);
  static StatusOr<ModelConfig> load_file(const std::string& path);
  nlohmann::json to_json() const;

  int64_t parameter_count() const;
};

}  // namespace hotswap::engine
