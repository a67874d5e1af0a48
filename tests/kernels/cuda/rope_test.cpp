// rope (CUDA) against a naive rotate-half RoPE with the angle in f32 (as transformers computes
// it) and cos/sin in double.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

std::vector<double> reference(const std::vector<float>& v, const std::vector<int32_t>& positions, int heads,
                              int head_dim, float theta) {
  const int half = head_dim / 2;
  std::vector<double> out(v.size());
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < heads; ++h) {
      const size_t base = (t * heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(head_dim));
        const float angle = static_cast<float>(positions[t]) * inv_freq;
        const double c = std::cos(static_cast<double>(angle));
        const double s = std::sin(static_cast<double>(angle));
        const double x1 = v[base + j];
        const double x2 = v[base + j + half];
        out[base + j] = x1 * c - x2 * s;
        out[base + j + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

TEST_F(CudaKernelTest, RopeMatchesReference) {
  const std::vector<int32_t> positions = {0, 1, 17, 500, 4095, 100000};
  const int64_t tokens = static_cast<int64_t>(positions.size());
  for (float theta : {10000.0f, 500000.0f}) {
    for (int head_dim : {2, 64, 128}) {
      constexpr int kHeads = 4;
      constexpr int kKvHeads = 2;
      SCOPED_TRACE("theta=" + std::to_string(theta) + " head_dim=" + std::to_string(head_dim));
      const auto q = testing::random_floats(tokens * kHeads * head_dim, 71, -2.0f, 2.0f);
      const auto k = testing::random_floats(tokens * kKvHeads * head_dim, 72, -2.0f, 2.0f);
      DeviceBuffer<float> d_q(q);
      DeviceBuffer<float> d_k(k);
      DeviceBuffer<int32_t> d_pos(positions);
      ASSERT_TRUE(rope(ctx_, d_q.get(), d_k.get(), d_pos.get(), tokens, kHeads, kKvHeads, head_dim, theta).ok());
      expect_clean();
      testing::expect_close(d_q.download(), reference(q, positions, kHeads, head_dim, theta), 2e-6, 2e-6, "q");
      testing::expect_close(d_k.download(), reference(k, positions, kKvHeads, head_dim, theta), 2e-6, 2e-6, "k");
    }
  }
}

TEST_F(CudaKernelTest, RopeNegativePositionPoisonsOnlyThatToken) {
  const std::vector<int32_t> positions = {3, -1};
  constexpr int kHeadDim = 8;
  const auto q = testing::random_floats(2 * kHeadDim, 73);
  const auto k = testing::random_floats(2 * kHeadDim, 74);
  DeviceBuffer<float> d_q(q);
  DeviceBuffer<float> d_k(k);
  DeviceBuffer<int32_t> d_pos(positions);
  ASSERT_TRUE(rope(ctx_, d_q.get(), d_k.get(), d_pos.get(), 2, 1, 1, kHeadDim, 10000.0f).ok());
  const Status st = take_index_errors(ctx_);
  EXPECT_NE(st.message().find("rope: positions"), std::string::npos) << st.message();
  const auto got_q = d_q.download();
  const auto want_q = reference(std::vector<float>(q.begin(), q.begin() + kHeadDim), {3}, 1, kHeadDim, 10000.0f);
  testing::expect_close(std::vector<float>(got_q.begin(), got_q.begin() + kHeadDim), want_q, 2e-6, 2e-6, "token 0");
  for (int d = kHeadDim; d < 2 * kHeadDim; ++d) EXPECT_TRUE(std::isnan(got_q[d]));
}

TEST(CudaRopeArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* q = testing::fake_device_ptr();
  float* k = testing::fake_device_ptr(1 << 20);
  const auto* pos = reinterpret_cast<const int32_t*>(testing::fake_device_ptr(2 << 20));
  Status st = rope(ctx, q, k, pos, 2, 4, 2, 7, 10000.0f);
  EXPECT_NE(st.message().find("head_dim must be even"), std::string::npos) << st.message();
  st = rope(ctx, q, k, pos, 2, 4, 2, 8, 0.0f);
  EXPECT_NE(st.message().find("theta"), std::string::npos) << st.message();
  st = rope(ctx, q, k, pos, 2, 4, 2, 2048, 10000.0f);
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  st = rope(ctx, q, k, nullptr, 2, 4, 2, 8, 10000.0f);
  EXPECT_NE(st.message().find("positions is null"), std::string::npos) << st.message();
  st = rope(ctx, q, q + 8, pos, 2, 4, 2, 8, 10000.0f);
  EXPECT_NE(st.message().find("q and k overlap"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
