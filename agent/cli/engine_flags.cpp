#include "agent/cli/engine_flags.h"

namespace hotswap::agent {

void add_engine_flags(FlagSet* flags) {
  flags->add("device", "DEV",
             "where the model runs: cpu (default), cuda, or auto (cuda when this agent has the CUDA backend and "
             "sees a GPU, else cpu)");
  flags->add("gpu", "N", "with --device cuda: the CUDA device ordinal (default 0)");
  flags->add("threads", "N", "CPU threads for the kernels, with --device cpu (default: all cores)");
  flags->add("kv-cache-mb", "MB", "KV cache size in MiB (default 256)");
  flags->add("block-size", "N", "positions per KV block (default 16)");
  flags->add("kv-dtype", "T", "KV cache element type: f32 (default, exact migration), bf16 or f16");
  flags->add("kv-blocks", "N", "KV cache size in blocks (overrides --kv-cache-mb)");
  flags->add("max-batch-tokens", "N", "token budget per engine step (default 512)");
  flags->add("max-num-seqs", "N", "sequences per engine step (default 64)");
  flags->add("max-model-len", "N", "context limit in tokens (default: the model's, capped by the cache)");
}

StatusOr<engine::EngineOptions> engine_options_from_flags(const FlagSet& flags) {
  engine::EngineOptions o;
  struct IntFlag {
    const char* name;
    int64_t min, max;
    int64_t value;
  };
  HOTSWAP_ASSIGN_OR_RETURN(int64_t threads, flags.get_int("threads", 0));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t kv_mb, flags.get_int("kv-cache-mb", o.kv_cache_bytes >> 20));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t block, flags.get_int("block-size", o.block_size));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t budget, flags.get_int("max-batch-tokens", o.max_batched_tokens));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t seqs, flags.get_int("max-num-seqs", o.max_num_seqs));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t len, flags.get_int("max-model-len", 0));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t kv_blocks, flags.get_int("kv-blocks", 0));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t gpu, flags.get_int("gpu", 0));
  for (const IntFlag& f : {IntFlag{"threads", 0, 1024, threads}, IntFlag{"kv-cache-mb", 1, 1 << 20, kv_mb},
                           IntFlag{"block-size", 1, 1024, block}, IntFlag{"max-batch-tokens", 1, 1 << 20, budget},
                           IntFlag{"max-num-seqs", 1, 1 << 16, seqs}, IntFlag{"max-model-len", 0, 1 << 24, len},
                           IntFlag{"kv-blocks", 0, int64_t{1} << 30, kv_blocks}, IntFlag{"gpu", 0, 1023, gpu}}) {
    if (f.value < f.min || f.value > f.max)
      return invalid_argument("flag --" + std::string(f.name) + " = " + std::to_string(f.value) + " is outside [" +
                              std::to_string(f.min) + ", " + std::to_string(f.max) + "]");
  }
  const std::string device = flags.get("device", "cpu");
  auto resolved = engine::resolve_device(device);
  if (!resolved.ok()) return invalid_argument("flag --device = '" + device + "' is not one of cpu, cuda, auto");
  o.device = *resolved;
  if (flags.has("gpu") && o.device != engine::Device::kCuda)
    return invalid_argument("flag --gpu needs --device cuda (or auto on a machine with a GPU); the device is " +
                            std::string(engine::device_name(o.device)));
  o.gpu = static_cast<int>(gpu);
  o.threads = static_cast<int>(threads);
  o.kv_cache_bytes = kv_mb << 20;
  o.block_size = static_cast<int>(block);
  o.max_batched_tokens = static_cast<int>(budget);
  o.max_num_seqs = static_cast<int>(seqs);
  o.max_model_len = static_cast<int>(len);
  o.kv_blocks = kv_blocks;
  const std::string kv_dtype = flags.get("kv-dtype", "f32");
  auto dt = kernels::parse_dtype(kv_dtype);
  if (!dt) return invalid_argument("flag --kv-dtype = '" + kv_dtype + "' is not one of f32, bf16, f16");
  o.kv_dtype = *dt;
  return o;
}

}  // namespace hotswap::agent
