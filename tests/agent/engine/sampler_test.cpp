#include "agent/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace hotswap::engine {
namespace {

// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
TEST(Philox, MatchesKnownAnswerVectors) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}),
            (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Philox, UniformsAreInRangeAndSpread) {
  double sum = 0;
  for (uint64_t s = 0; s < 20000; ++s) {
    double u = uniform_for_step(7, s);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 20000, 0.5, 0.01);
  EXPECT_NE(uniform_for_step(1, 5), uniform_for_step(2, 5));
  EXPECT_EQ(uniform_for_step(1, 5), uniform_for_step(1, 5));
}

TEST(Sampler, GreedyPicksTheLowestIndexOfTheMaximum) {
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  std::vector<std::pair<float, int32_t>> scratch;
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0, &scratch), 1);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  std::vector<std::pair<float, int32_t>> scratch;
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 99;
  std::map<int32_t, int> counts;
  const int n = 30000;
  for (int s = 0; s < n; ++s) ++counts[sample_token(logits.data(), 3, p, s, &scratch)];
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.015);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.015);
}

TEST(Sampler, TopKAndTopPExcludeTheTail) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  std::vector<std::pair<float, int32_t>> scratch;
  SamplingParams k2;
  k2.top_k = 2;
  SamplingParams p75;
  p75.top_p = 0.75f;  // 0.5 + 0.3 reaches it: tokens 0 and 1 only
  for (int s = 0; s < 5000; ++s) {
    EXPECT_LT(sample_token(logits.data(), 4, k2, s, &scratch), 2);
    EXPECT_LT(sample_token(logits.data(), 4, p75, s, &scratch), 2);
  }
}

TEST(Sampler, SameSeedAndStepGiveTheSameToken) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.37f);
  std::vector<std::pair<float, int32_t>> scratch;
  SamplingParams p;
  p.seed = 5;
  p.temperature = 1.3f;
  for (int s = 0; s < 50; ++s)
    EXPECT_EQ(sample_token(logits.data(), 100, p, s, &scratch), sample_token(logits.data(), 100, p, s, &scratch));
}

TEST(Sampler, InvalidParamsAreRejected) {
  SamplingParams p;
  p.temperature = -0.5f;
  EXPECT_FALSE(p.validate().ok());
  p = SamplingParams();
  p.top_p = 1.5f;
  EXPECT_FALSE(p.validate().ok());
  p = SamplingParams();
  p.top_k = -1;
  EXPECT_FALSE(p.validate().ok());
  EXPECT_TRUE(SamplingParams().validate().ok());
}

}  // namespace
}  // namespace hotswap::engine
