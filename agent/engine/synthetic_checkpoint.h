// Synthetic checkpoints in the real Hugging Face format, for tests, the demo and benchmarks:
// `hotswap-agent make-model` writes config.json, generation_config.json, tokenizer.json (a
// byte-level BPE trained at generation time on text the project generates), tokenizer_config.json
// and model.safetensors (sharded with model.safetensors.index.json for the larger presets).
//
// Weights are random but scaled so the logits are far from uniform: different prompts continue
// differently, and greedy decoding is not a coin toss between near-equal tokens.
#pragma once

#include <cstdint>
#include <string>

#include "agent/engine/model_config.h"
#include "common/status.h"
#include "kernels/dtype.h"

namespace hotswap::engine {

struct SyntheticModelSpec {
  std::string preset = "tiny";  // tiny (~1M parameters), small (~25M), medium (~0.5B), large (~1B)
  Architecture architecture = Architecture::kLlama;
  kernels::DType dtype = kernels::DType::kBF16;
  uint64_t seed = 0;
  int64_t max_shard_bytes = 0;  // 0: the preset's default (medium is sharded)
};

// The config a preset stands for (vocab_size included).
StatusOr<ModelConfig> synthetic_model_config(const SyntheticModelSpec& spec);

// Writes the checkpoint into out_dir (created if missing). Deterministic in spec.
Status write_synthetic_checkpoint(const SyntheticModelSpec& spec, const std::string& out_dir);

}  // namespace hotswap::engine
