// Token sampling with a counter-based RNG: the random number for a request's step n is
// Philox4x32-10(key = seed, counter = n), so a sequence's future depends only on its logits and
// (seed, step) — never on which other requests ran, or on which machine. That is what lets a
// migrated sequence continue exactly where it stopped.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/status.h"

namespace hotswap::engine {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0: no limit
  uint64_t seed = 0;

  Status validate() const;
};

// Philox4x32 with 10 rounds (Salmon et al., SC'11), as in cuRAND and JAX.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// A uniform double in [0, 1) for (seed, step), from 53 random bits.
double uniform_for_step(uint64_t seed, uint64_t step);

// Picks the next token from one row of logits. scratch is reused between calls.
int32_t sample_token(const float* logits, int32_t vocab, const SamplingParams& params, uint64_t step,
                     std::vector<std::pair<float, int32_t>>* scratch);

}  // namespace hotswap::engine
