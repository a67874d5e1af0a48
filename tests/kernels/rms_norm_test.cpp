#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

TEST(RmsNormTest, RmsNormMatchesNaiveReference) {
  ThreadPool pool(2);
  uint32_t seed = 3;
  for (DType t : testing::kAllDTypes) {
    for (int64_t rows : {1, 3, 9}) {
      for (int64_t dim : {1, 7, 64, 333}) {
        const auto x = testing::random_floats(static_cast<size_t>(rows * dim), seed++, -3.0f, 3.0f);
        const auto w = testing::store_as(testing::random_floats(static_cast<size_t>(dim), seed++, 0.5f, 1.5f), t);
        const float eps = 1e-5f;
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<float> y(x.size());
          ASSERT_TRUE(rms_norm(CpuContext{p}, x.data(), w.data(), t, y.data(), rows, dim, eps).ok());
          for (int64_t r = 0; r < rows; ++r) {
            double ss = 0;
            for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
            const double inv = 1.0 / std::sqrt(ss / dim + eps);
            for (int64_t i = 0; i < dim; ++i) {
              const double ref = w.values[i] * (x[r * dim + i] * inv);
              ASSERT_NEAR(y[r * dim + i], ref, 1e-5 * std::fabs(ref) + 1e-6)
                  << dtype_name(t) << " r=" << r << " i=" << i;
            }
          }
        }
      }
    }
  }
}

TEST(RmsNormTest, RmsNormWorksInPlace) {
  const auto x = testing::random_floats(2 * 40, 4);
  const auto w = testing::store_as(testing::random_floats(40, 5), DType::kBF16);
  std::vector<float> y(x.size());
  ASSERT_TRUE(rms_norm(CpuContext{}, x.data(), w.data(), DType::kBF16, y.data(), 2, 40, 1e-6f).ok());
  std::vector<float> inplace = x;
  ASSERT_TRUE(rms_norm(CpuContext{}, inplace.data(), w.data(), DType::kBF16, inplace.data(), 2, 40, 1e-6f).ok());
  EXPECT_TRUE(testing::bits_equal(y, inplace));
}

TEST(RmsNormTest, RmsNormIsBatchInvariant) {
  ThreadPool pool(4);
  const int64_t rows = 16, dim = 129;
  const auto x = testing::random_floats(rows * dim, 6);
  const auto w = testing::store_as(testing::random_floats(dim, 7), DType::kF16);
  std::vector<float> batched(x.size());
  ASSERT_TRUE(rms_norm(CpuContext{&pool}, x.data(), w.data(), DType::kF16, batched.data(), rows, dim, 1e-5f).ok());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> alone(dim);
    ASSERT_TRUE(rms_norm(CpuContext{}, x.data() + r * dim, w.data(), DType::kF16, alone.data(), 1, dim, 1e-5f).ok());
    EXPECT_TRUE(
        testing::bits_equal(alone, std::vector<float>(batched.begin() + r * dim, batched.begin() + (r + 1) * dim)));
  }
}

TEST(RmsNormTest, RmsNormRejectsBadArguments) {
  std::vector<float> x(8, 1.0f), w(4, 1.0f), y(8);
  const CpuContext ctx;
  EXPECT_TRUE(rms_norm(ctx, x.data(), w.data(), DType::kF32, y.data(), 2, 4, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, nullptr, w.data(), DType::kF32, y.data(), 2, 4, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), nullptr, DType::kF32, y.data(), 2, 4, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), w.data(), DType::kF32, nullptr, 2, 4, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), w.data(), DType::kF32, y.data(), -1, 4, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), w.data(), DType::kF32, y.data(), 2, 0, 1e-5f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), w.data(), DType::kF32, y.data(), 2, 4, -1.0f).ok());
  EXPECT_FALSE(rms_norm(ctx, x.data(), w.data(), static_cast<DType>(5), y.data(), 2, 4, 1e-5f).ok());
}

}  // namespace
}  // namespace hotswap::kernels
