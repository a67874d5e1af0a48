#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

// Rotate-half in double, from the definition (angle = pos / theta^(2j/d)).
void naive_rope(std::vector<double>& v, int64_t tokens, int heads, int d, const std::vector<int32_t>& pos,
                double theta) {
  const int half = d / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      double* x = v.data() + (t * heads + h) * d;
      for (int j = 0; j < half; ++j) {
        const double a = pos[t] / std::pow(theta, 2.0 * j / d);
        const double x1 = x[j], x2 = x[j + half];
        x[j] = x1 * std::cos(a) - x2 * std::sin(a);
        x[j + half] = x2 * std::cos(a) + x1 * std::sin(a);
      }
    }
  }
}

TEST(RopeTest, RopeMatchesNaiveRotateHalfReference) {
  ThreadPool pool(2);
  const int n_heads = 4, n_kv_heads = 2;
  for (int head_dim : {8, 64, 6}) {
    const int64_t tokens = 9;
    std::vector<int32_t> pos = {0, 1, 2, 3, 7, 15, 31, 40, 63};
    auto q = testing::random_floats(tokens * n_heads * head_dim, 1);
    auto k = testing::random_floats(tokens * n_kv_heads * head_dim, 2);
    std::vector<double> qref(q.begin(), q.end()), kref(k.begin(), k.end());
    naive_rope(qref, tokens, n_heads, head_dim, pos, 10000.0);
    naive_rope(kref, tokens, n_kv_heads, head_dim, pos, 10000.0);
    ASSERT_TRUE(
        rope(CpuContext{&pool}, q.data(), k.data(), pos.data(), tokens, n_heads, n_kv_heads, head_dim, 10000.0f).ok());
    // f32 angles for positions < 64 are within ~1e-5 rad of the exact ones.
    for (size_t i = 0; i < q.size(); ++i) ASSERT_NEAR(q[i], qref[i], 2e-5) << "q " << i << " d=" << head_dim;
    for (size_t i = 0; i < k.size(); ++i) ASSERT_NEAR(k[i], kref[i], 2e-5) << "k " << i << " d=" << head_dim;
  }
}

// transformers computes inv_freq and the angle in f32; at large positions that rounding moves
// the angle by far more than f32 epsilon, so the kernel must follow the f32 recipe exactly.
TEST(RopeTest, RopeFollowsTransformersFloatAnglesAtLargePositions) {
  const int head_dim = 128;
  const float theta = 500000.0f;
  std::vector<int32_t> pos = {8191, 100000};
  auto q = testing::random_floats(2 * head_dim, 3);
  auto k = testing::random_floats(2 * head_dim, 4);
  const auto q0 = q;
  ASSERT_TRUE(rope(CpuContext{}, q.data(), k.data(), pos.data(), 2, 1, 1, head_dim, theta).ok());
  const int half = head_dim / 2;
  for (int t = 0; t < 2; ++t) {
    for (int j = 0; j < half; ++j) {
      const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos[t]) * inv_freq;
      const float c = std::cos(angle), s = std::sin(angle);
      const float x1 = q0[t * head_dim + j], x2 = q0[t * head_dim + j + half];
      EXPECT_NEAR(q[t * head_dim + j], x1 * c - x2 * s, 1e-6);
      EXPECT_NEAR(q[t * head_dim + j + half], x2 * c + x1 * s, 1e-6);
    }
  }
}

TEST(RopeTest, RopeAtPositionZeroIsIdentity) {
  auto q = testing::random_floats(2 * 16, 5);
  auto k = testing::random_floats(16, 6);
  const auto q0 = q, k0 = k;
  const int32_t pos = 0;
  ASSERT_TRUE(rope(CpuContext{}, q.data(), k.data(), &pos, 1, 2, 1, 16, 10000.0f).ok());
  EXPECT_TRUE(testing::bits_equal(q, q0));
  EXPECT_TRUE(testing::bits_equal(k, k0));
}

TEST(RopeTest, RopeRejectsBadArguments) {
  std::vector<float> q(16), k(8);
  const int32_t pos = 1, neg = -1;
  const CpuContext ctx;
  EXPECT_TRUE(rope(ctx, q.data(), k.data(), &pos, 1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &pos, 1, 2, 1, 7, 10000.0f).ok());  // odd head_dim
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &pos, 1, 0, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &pos, 1, 2, 0, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &pos, -1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, nullptr, k.data(), &pos, 1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), nullptr, &pos, 1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), nullptr, 1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &neg, 1, 2, 1, 8, 10000.0f).ok());
  EXPECT_FALSE(rope(ctx, q.data(), k.data(), &pos, 1, 2, 1, 8, 0.0f).ok());
}

}  // namespace
}  // namespace hotswap::kernels
