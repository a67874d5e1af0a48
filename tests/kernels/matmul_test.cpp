#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

using testing::kAllDTypes;
using testing::SimdPath;
using testing::StoredTensor;

// y = x w^T (+ b) in double over the stored weight values; also returns sum |x*w| per element
// for a rounding-aware tolerance.
void naive_matmul(const std::vector<float>& x, int64_t rows, int64_t in, const StoredTensor& w, int64_t out,
                  const StoredTensor* bias, std::vector<double>& y, std::vector<double>& mag) {
  y.assign(static_cast<size_t>(rows * out), 0.0);
  mag.assign(static_cast<size_t>(rows * out), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0, m = 0;
      for (int64_t i = 0; i < in; ++i) {
        const double p = static_cast<double>(x[r * in + i]) * w.values[o * in + i];
        s += p;
        m += std::fabs(p);
      }
      if (bias != nullptr) {
        s += bias->values[o];
        m += std::fabs(bias->values[o]);
      }
      y[r * out + o] = s;
      mag[r * out + o] = m;
    }
  }
}

class MatmulPathTest : public ::testing::TestWithParam<bool> {};

TEST_P(MatmulPathTest, MatmulMatchesNaiveReference) {
  SimdPath path(GetParam());
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (DType t : kAllDTypes) {
    for (int64_t rows : {1, 2, 3, 4, 5, 7, 16}) {
      for (int64_t in : {1, 7, 8, 13, 64, 257}) {
        for (int64_t out : {1, 5, 33}) {
          for (bool with_bias : {false, true}) {
            const auto x = testing::random_floats(static_cast<size_t>(rows * in), seed++);
            const auto w = testing::store_as(testing::random_floats(static_cast<size_t>(out * in), seed++), t);
            const auto b = testing::store_as(testing::random_floats(static_cast<size_t>(out), seed++), t);
            std::vector<double> ref, mag;
            naive_matmul(x, rows, in, w, out, with_bias ? &b : nullptr, ref, mag);
            for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
              std::vector<float> y(static_cast<size_t>(rows * out), NAN);
              ASSERT_TRUE(
                  matmul(CpuContext{p}, x.data(), rows, in, w.data(), t, out, with_bias ? b.data() : nullptr, y.data())
                      .ok());
              for (size_t i = 0; i < y.size(); ++i) {
                ASSERT_NEAR(y[i], ref[i], 1e-6 * mag[i] * 4 + 1e-6)
                    << dtype_name(t) << " rows=" << rows << " in=" << in << " out=" << out << " i=" << i;
              }
            }
          }
        }
      }
    }
  }
}

// The engine's batching promise: a token's logits do not depend on who else is in the batch.
TEST_P(MatmulPathTest, MatmulIsBatchInvariant) {
  SimdPath path(GetParam());
  ThreadPool pool2(2);
  ThreadPool pool4(4);
  const int64_t rows = 16;
  for (DType t : kAllDTypes) {
    for (int64_t in : {300, 512}) {
      const int64_t out = 67;
      const auto x = testing::random_floats(static_cast<size_t>(rows * in), 11);
      const auto w = testing::store_as(testing::random_floats(static_cast<size_t>(out * in), 12), t);
      const auto b = testing::store_as(testing::random_floats(static_cast<size_t>(out), 13), t);
      for (ThreadPool* batch_pool : {&pool2, &pool4}) {
        std::vector<float> batched(static_cast<size_t>(rows * out));
        ASSERT_TRUE(
            matmul(CpuContext{batch_pool}, x.data(), rows, in, w.data(), t, out, b.data(), batched.data()).ok());
        for (ThreadPool* alone_pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool4}) {
          for (int64_t r = 0; r < rows; ++r) {
            std::vector<float> alone(static_cast<size_t>(out));
            ASSERT_TRUE(
                matmul(CpuContext{alone_pool}, x.data() + r * in, 1, in, w.data(), t, out, b.data(), alone.data())
                    .ok());
            const std::vector<float> row(batched.begin() + r * out, batched.begin() + (r + 1) * out);
            ASSERT_TRUE(testing::bits_equal(row, alone)) << dtype_name(t) << " in=" << in << " row " << r;
          }
        }
        // Sub-batches of every size give the same bits as well (tiles of 1..4 rows).
        for (int64_t sub = 1; sub <= 7; ++sub) {
          std::vector<float> part(static_cast<size_t>(sub * out));
          ASSERT_TRUE(
              matmul(CpuContext{nullptr}, x.data() + 3 * in, sub, in, w.data(), t, out, b.data(), part.data()).ok());
          const std::vector<float> expect(batched.begin() + 3 * out, batched.begin() + (3 + sub) * out);
          ASSERT_TRUE(testing::bits_equal(part, expect)) << dtype_name(t) << " sub-batch " << sub;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, MatmulPathTest, ::testing::Values(true, false),
                         [](const auto& info) { return testing::path_name(info.param); });

TEST(MatmulTest, MatmulWithoutBiasKeepsTheExactDotProduct) {
  // Small integers: every path must give the exact answer.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto w = testing::store_as({1, 0, -1, 2, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, DType::kBF16);
  std::vector<float> y(2);
  ASSERT_TRUE(matmul(CpuContext{}, x.data(), 1, 9, w.data(), DType::kBF16, 2, nullptr, y.data()).ok());
  EXPECT_EQ(y[0], 1 - 3 + 8 + 9);
  EXPECT_EQ(y[1], 45);
}

TEST(MatmulTest, MatmulRejectsBadArguments) {
  std::vector<float> x(8, 1.0f), w(8, 1.0f), y(2);
  const CpuContext ctx;
  EXPECT_TRUE(matmul(ctx, x.data(), 1, 4, w.data(), DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_TRUE(matmul(ctx, x.data(), 0, 4, w.data(), DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, nullptr, 1, 4, w.data(), DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), 1, 4, nullptr, DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), 1, 4, w.data(), DType::kF32, 2, nullptr, nullptr).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), -1, 4, w.data(), DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), 1, 0, w.data(), DType::kF32, 2, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), 1, 4, w.data(), DType::kF32, 0, nullptr, y.data()).ok());
  EXPECT_FALSE(matmul(ctx, x.data(), 1, 4, w.data(), static_cast<DType>(9), 2, nullptr, y.data()).ok());
  const Status alias = matmul(ctx, x.data(), 1, 4, w.data(), DType::kF32, 2, nullptr, x.data());
  EXPECT_EQ(alias.code(), StatusCode::kInvalidArgument);
  const Status st = matmul(ctx, x.data(), 1, 0, w.data(), DType::kF32, 2, nullptr, y.data());
  EXPECT_NE(st.message().find("in"), std::string::npos) << st.message();
}

// Decode throughput: one row against a 2048x2048 BF16 weight, single thread. Run with
// --gtest_also_run_disabled_tests; prints weight GB/s.
TEST(MatmulTest, DISABLED_MatmulDecodeBandwidth) {
  const int64_t in = 2048, out = 2048;
  for (DType t : kAllDTypes) {
    const auto w = testing::store_as(testing::random_floats(static_cast<size_t>(in * out), 5), t);
    const auto x = testing::random_floats(static_cast<size_t>(in), 6);
    std::vector<float> y(static_cast<size_t>(out));
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      for (int64_t rows : {1, 4}) {
        std::vector<float> xs(static_cast<size_t>(rows * in));
        for (int64_t r = 0; r < rows; ++r) std::copy(x.begin(), x.end(), xs.begin() + r * in);
        std::vector<float> ys(static_cast<size_t>(rows * out));
        const int reps = 200;
        ASSERT_TRUE(matmul(CpuContext{&pool}, xs.data(), rows, in, w.data(), t, out, nullptr, ys.data()).ok());
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) {
          ASSERT_TRUE(matmul(CpuContext{&pool}, xs.data(), rows, in, w.data(), t, out, nullptr, ys.data()).ok());
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%s threads=%d rows=%lld: %.2f GB/s of weight, %.1f us/call\n", dtype_name(t), threads,
                    static_cast<long long>(rows), static_cast<double>(w.bytes.size()) * reps / s / 1e9, s / reps * 1e6);
      }
    }
  }
}

}  // namespace
}  // namespace hotswap::kernels
