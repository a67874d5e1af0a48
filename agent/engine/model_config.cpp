#include "agent/engine/model_config.h"

#include <fstream>

namespace hotswap::engine {

using nlohmann::json;

const char* architecture_name(Architecture a) {
  return a == Architecture::kQwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
}

namespace {

Status read_int(const json& j, const std::string& source, const char* key, bool required, int* out) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return invalid_argument(source + ": missing '" + key + "'");
    return Status();
  }
  if (!j[key].is_number_integer()) return invalid_argument(source + ": '" + key + "' must be an integer");
  int64_t v = j[key].get<int64_t>();
  if (v <= 0 || v > (int64_t{1} << 30))
    return invalid_argument(source + ": '" + key + "' = " + std::to_string(v) + " is out of range");
  *out = static_cast<int>(v);
  return Status();
}

Status read_float(const json& j, const std::string& source, const char* key, float* out) {
  if (!j.contains(key) || j[key].is_null()) return Status();
  if (!j[key].is_number()) return invalid_argument(source + ": '" + key + "' must be a number");
  *out = j[key].get<float>();
  if (!(*out > 0)) return invalid_argument(source + ": '" + key + "' must be positive");
  return Status();
}

Status read_token_ids(const json& j, const std::string& source, const char* key, std::vector<int32_t>* out) {
  if (!j.contains(key) || j[key].is_null()) return Status();
  const json& v = j[key];
  if (v.is_number_integer()) {
    out->push_back(v.get<int32_t>());
    return Status();
  }
  if (v.is_array()) {
    for (const auto& x : v) {
      if (!x.is_number_integer()) return invalid_argument(source + ": '" + key + "' must hold integers");
      out->push_back(x.get<int32_t>());
    }
    return Status();
  }
  return invalid_argument(source + ": '" + key + "' must be an integer or a list of integers");
}

}  // namespace

StatusOr<ModelConfig> ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) return invalid_argument(source + ": not a JSON object");
  ModelConfig c;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    arch = j["model_type"].get<std::string>();
  }
  if (arch == "LlamaForCausalLM" || arch == "llama") {
    c.architecture = Architecture::kLlama;
  } else if (arch == "Qwen2ForCausalLM" || arch == "qwen2") {
    c.architecture = Architecture::kQwen2;
  } else {
    return unimplemented(source + ": unsupported architecture '" + arch +
                         "' (supported: LlamaForCausalLM, Qwen2ForCausalLM)");
  }
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "vocab_size", true, &c.vocab_size));
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "hidden_size", true, &c.hidden_size));
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "intermediate_size", true, &c.intermediate_size));
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "num_hidden_layers", true, &c.num_hidden_layers));
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "num_key_value_heads", false, &c.num_key_value_heads));
  if (c.hidden_size % c.num_attention_heads != 0 && !j.contains("head_dim"))
    return invalid_argument(source + ": hidden_size " + std::to_string(c.hidden_size) +
                            " is not a multiple of num_attention_heads " + std::to_string(c.num_attention_heads));
  c.head_dim = c.hidden_size / c.num_attention_heads;
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "head_dim", false, &c.head_dim));
  if (c.head_dim % 2 != 0) return invalid_argument(source + ": head_dim must be even for RoPE");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return invalid_argument(source + ": num_attention_heads " + std::to_string(c.num_attention_heads) +
                            " is not a multiple of num_key_value_heads " + std::to_string(c.num_key_value_heads));
  c.max_position_embeddings = 4096;
  HOTSWAP_RETURN_IF_ERROR(read_int(j, source, "max_position_embeddings", false, &c.max_position_embeddings));
  HOTSWAP_RETURN_IF_ERROR(read_float(j, source, "rms_norm_eps", &c.rms_norm_eps));
  HOTSWAP_RETURN_IF_ERROR(read_float(j, source, "rope_theta", &c.rope_theta));
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean()) return invalid_argument(source + ": 'tie_word_embeddings' must be a boolean");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  c.attention_bias = c.architecture == Architecture::kQwen2;
  if (j.contains("attention_bias") && j["attention_bias"].is_boolean() && c.architecture == Architecture::kLlama)
    c.attention_bias = j["attention_bias"].get<bool>();
  if (j.contains("hidden_act") && j["hidden_act"].is_string() && j["hidden_act"] != "silu")
    return unimplemented(source + ": hidden_act '" + j["hidden_act"].get<std::string>() + "' (supported: silu)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    return unimplemented(source + ": rope_scaling is not supported yet (only plain RoPE with rope_theta)");
  if (j.contains("use_sliding_window") && j["use_sliding_window"].is_boolean() && j["use_sliding_window"].get<bool>())
    return unimplemented(source + ": use_sliding_window=true is not supported");
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
    auto t = kernels::parse_dtype(j["torch_dtype"].get<std::string>());
    if (!t) return unimplemented(source + ": torch_dtype '" + j["torch_dtype"].get<std::string>() + "'");
    c.torch_dtype = *t;
  }
  HOTSWAP_RETURN_IF_ERROR(read_token_ids(j, source, "bos_token_id", &c.bos_token_ids));
  HOTSWAP_RETURN_IF_ERROR(read_token_ids(j, source, "eos_token_id", &c.eos_token_ids));
  for (int32_t id : c.eos_token_ids)
    if (id < 0 || id >= c.vocab_size)
      return invalid_argument(source + ": eos_token_id " + std::to_string(id) + " is outside the vocabulary");
  return c;
}

StatusOr<ModelConfig> ModelConfig::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument(path + ": not valid JSON");
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  bool qwen = architecture == Architecture::kQwen2;
  json j = {
      {"architectures", {architecture_name(architecture)}},
      {"model_type", qwen ? "qwen2" : "llama"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim},
      {"max_position_embeddings", max_position_embeddings},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"hidden_act", "silu"},
      {"initializer_range", 0.02},
      {"tie_word_embeddings", tie_word_embeddings},
      {"torch_dtype", torch_dtype == kernels::DType::kF32   ? "float32"
                      : torch_dtype == kernels::DType::kF16 ? "float16"
                                                            : "bfloat16"},
      {"use_cache", true},
      {"transformers_version", "4.45.0"},
  };
  if (qwen) {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = num_hidden_layers;
    j["attention_dropout"] = 0.0;
  } else {
    j["attention_bias"] = attention_bias;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  if (bos_token_ids.size() == 1) j["bos_token_id"] = bos_token_ids[0];
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j;
}

int64_t ModelConfig::parameter_count() const {
  int64_t h = hidden_size, q = int64_t{num_attention_heads} * head_dim, kv = int64_t{num_key_value_heads} * head_dim;
  int64_t per_layer = h * q + 2 * h * kv + q * h + 3 * h * intermediate_size + 2 * h;
  if (attention_bias) per_layer += q + 2 * kv;
  int64_t n = per_layer * num_hidden_layers + int64_t{vocab_size} * h + h;
  if (!tie_word_embeddings) n += int64_t{vocab_size} * h;
  return n;
}

}  // namespace hotswap::engine
