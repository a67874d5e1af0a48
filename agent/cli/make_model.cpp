#include <chrono>
#include <cstdio>

#include "agent/cli/commands.h"
#include "agent/engine/synthetic_checkpoint.h"
#include "common/flags.h"

namespace hotswap::agent {

int run_make_model(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-agent make-model --preset tiny|small|medium|large [--arch llama|qwen2] [--dtype f32|f16|bf16]\n"
      "                                [--seed N] --out DIR");
  flags.add("preset", "NAME", "tiny (~1M parameters), small (~25M), medium (~0.5B) or large (~1B)");
  flags.add("arch", "ARCH", "llama (LlamaForCausalLM, default) or qwen2 (Qwen2ForCausalLM, q/k/v biases)");
  flags.add("dtype", "DTYPE", "weight dtype: f32, f16 or bf16 (default bf16)");
  flags.add("seed", "N", "seed for weights and tokenizer corpus (default 0)");
  flags.add("out", "DIR", "output directory (created if missing)");
  flags.add("help", "", "show this help");
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) {
    std::fprintf(stderr, "make-model: %s\n", st.message().c_str());
    return 2;
  }
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  if (!flags.has("out") || !flags.has("preset")) {
    std::fprintf(stderr, "make-model: --preset and --out are required\n\n%s", flags.help().c_str());
    return 2;
  }
  engine::SyntheticModelSpec spec;
  spec.preset = flags.get("preset");
  std::string arch = flags.get("arch", "llama");
  if (arch == "llama") spec.architecture = engine::Architecture::kLlama;
  else if (arch == "qwen2") spec.architecture = engine::Architecture::kQwen2;
  else {
    std::fprintf(stderr, "make-model: --arch '%s' is not one of llama, qwen2\n", arch.c_str());
    return 2;
  }
  std::string dtype = flags.get("dtype", "bf16");
  auto dt = kernels::parse_dtype(dtype);
  if (!dt) {
    std::fprintf(stderr, "make-model: --dtype '%s' is not one of f32, f16, bf16\n", dtype.c_str());
    return 2;
  }
  spec.dtype = *dt;
  auto seed = flags.get_int("seed", 0);
  if (!seed.ok() || *seed < 0) {
    std::fprintf(stderr, "make-model: --seed must be a non-negative integer\n");
    return 2;
  }
  spec.seed = static_cast<uint64_t>(*seed);
  auto t0 = std::chrono::steady_clock::now();
  if (Status st = engine::write_synthetic_checkpoint(spec, flags.get("out")); !st.ok()) {
    std::fprintf(stderr, "make-model: %s\n", st.to_string().c_str());
    return 1;
  }
  auto config = engine::synthetic_model_config(spec);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "make-model: wrote %s (%s, %s, %s, %.1fM parameters) in %.1f s\n", flags.get("out").c_str(),
               spec.preset.c_str(), engine::architecture_name(spec.architecture), kernels::dtype_name(spec.dtype),
               config->parameter_count() / 1e6, s);
  return 0;
}

}  // namespace hotswap::agent
