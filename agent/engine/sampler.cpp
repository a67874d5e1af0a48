#include "agent/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace hotswap::engine {

Status SamplingParams::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    return invalid_argument("temperature must be a finite number >= 0, got " + std::to_string(temperature));
  if (!(top_p > 0.0f && top_p <= 1.0f)) return invalid_argument("top_p must be in (0, 1], got " + std::to_string(top_p));
  if (top_k < 0) return invalid_argument("top_k must be >= 0, got " + std::to_string(top_k));
  return Status();
}

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t{kM0} * ctr[0];
    uint64_t p1 = uint64_t{kM1} * ctr[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

double uniform_for_step(uint64_t seed, uint64_t step) {
  auto r = philox4x32_10({static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), 0, 0},
                         {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  uint64_t bits = (uint64_t{r[0]} << 32 | r[1]) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

int32_t sample_token(const float* logits, int32_t vocab, const SamplingParams& params, uint64_t step,
                     std::vector<std::pair<float, int32_t>>* scratch) {
  // Greedy: the lowest index among the maxima, as torch.argmax.
  if (params.temperature == 0.0f || params.top_k == 1) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  auto& cand = *scratch;
  cand.resize(vocab);
  for (int32_t i = 0; i < vocab; ++i) cand[i] = {logits[i] / params.temperature, i};
  // Descending by logit, ties by index: a total order, so the result does not depend on the sort.
  auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  int32_t keep = vocab;
  if (params.top_k > 0 && params.top_k < vocab) {
    keep = params.top_k;
    std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), before);
  } else {
    std::sort(cand.begin(), cand.end(), before);
  }
  // Softmax over the kept candidates, in double.
  double max_logit = cand[0].first, total = 0.0;
  std::vector<double> probs(keep);
  for (int32_t i = 0; i < keep; ++i) total += probs[i] = std::exp(static_cast<double>(cand[i].first) - max_logit);
  // Top-p: the smallest prefix whose mass reaches top_p (at least one token).
  if (params.top_p < 1.0f) {
    double cum = 0.0;
    int32_t n = 0;
    while (n < keep) {
      cum += probs[n] / total;
      ++n;
      if (cum >= params.top_p) break;
    }
    keep = n;
    total = 0.0;
    for (int32_t i = 0; i < keep; ++i) total += probs[i];
  }
  double u = uniform_for_step(params.seed, step) * total;
  double cum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return cand[i].second;
  }
  return cand[keep - 1].second;
}

}  // namespace hotswap::engine
