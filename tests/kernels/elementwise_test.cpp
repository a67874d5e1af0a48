// add, swiglu, softmax, argmax and embedding against naive references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

TEST(AddTest, AddMatchesNaiveSum) {
  ThreadPool pool(2);
  for (int64_t n : {1, 17, 100000}) {
    auto y = testing::random_floats(n, 1);
    const auto x = testing::random_floats(n, 2);
    const auto y0 = y;
    ASSERT_TRUE(add(CpuContext{&pool}, y.data(), x.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], y0[i] + x[i]);
  }
}

TEST(AddTest, AddRejectsBadArguments) {
  std::vector<float> a(4), b(4);
  EXPECT_TRUE(add(CpuContext{}, a.data(), b.data(), 0).ok());
  EXPECT_FALSE(add(CpuContext{}, nullptr, b.data(), 4).ok());
  EXPECT_FALSE(add(CpuContext{}, a.data(), nullptr, 4).ok());
  EXPECT_FALSE(add(CpuContext{}, a.data(), b.data(), -1).ok());
}

TEST(SwigluTest, SwigluMatchesNaiveReference) {
  ThreadPool pool(2);
  for (int64_t n : {1, 33, 50000}) {
    const auto gate = testing::random_floats(n, 3, -8.0f, 8.0f);
    const auto up = testing::random_floats(n, 4, -2.0f, 2.0f);
    std::vector<float> out(n);
    ASSERT_TRUE(swiglu(CpuContext{&pool}, gate.data(), up.data(), out.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double ref = g / (1.0 + std::exp(-g)) * up[i];
      ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-7) << i;
    }
  }
}

TEST(SwigluTest, SwigluWorksInPlaceOnGateAndOnUp) {
  const auto gate = testing::random_floats(64, 5, -4.0f, 4.0f);
  const auto up = testing::random_floats(64, 6);
  std::vector<float> expect(64);
  ASSERT_TRUE(swiglu(CpuContext{}, gate.data(), up.data(), expect.data(), 64).ok());
  auto g = gate;
  ASSERT_TRUE(swiglu(CpuContext{}, g.data(), up.data(), g.data(), 64).ok());
  EXPECT_TRUE(testing::bits_equal(g, expect));
  auto u = up;
  ASSERT_TRUE(swiglu(CpuContext{}, gate.data(), u.data(), u.data(), 64).ok());
  EXPECT_TRUE(testing::bits_equal(u, expect));
}

TEST(SwigluTest, SwigluRejectsBadArguments) {
  std::vector<float> a(4);
  EXPECT_FALSE(swiglu(CpuContext{}, nullptr, a.data(), a.data(), 4).ok());
  EXPECT_FALSE(swiglu(CpuContext{}, a.data(), nullptr, a.data(), 4).ok());
  EXPECT_FALSE(swiglu(CpuContext{}, a.data(), a.data(), nullptr, 4).ok());
  EXPECT_FALSE(swiglu(CpuContext{}, a.data(), a.data(), a.data(), -2).ok());
}

TEST(SoftmaxTest, SoftmaxMatchesNaiveReference) {
  ThreadPool pool(2);
  const int64_t rows = 5, vocab = 1000;
  const auto logits = testing::random_floats(rows * vocab, 7, -20.0f, 20.0f);
  std::vector<float> probs(logits.size());
  ASSERT_TRUE(softmax(CpuContext{&pool}, logits.data(), probs.data(), rows, vocab).ok());
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, sum = 0;
    for (int64_t i = 0; i < vocab; ++i) m = std::max(m, static_cast<double>(logits[r * vocab + i]));
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[r * vocab + i] - m);
    for (int64_t i = 0; i < vocab; ++i) {
      const double ref = std::exp(logits[r * vocab + i] - m) / sum;
      ASSERT_NEAR(probs[r * vocab + i], ref, 1e-5 * ref + 1e-9);
    }
  }
}

TEST(SoftmaxTest, SoftmaxIsStableForHugeLogitsAndWorksInPlace) {
  std::vector<float> x = {1000.0f, 1000.0f, -1000.0f, 999.0f};
  ASSERT_TRUE(softmax(CpuContext{}, x.data(), x.data(), 1, 4).ok());
  const double e1 = std::exp(-1.0);
  EXPECT_NEAR(x[0], 1.0 / (2 + e1), 1e-6);
  EXPECT_NEAR(x[1], 1.0 / (2 + e1), 1e-6);
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[3], e1 / (2 + e1), 1e-6);
}

TEST(SoftmaxTest, SoftmaxRejectsBadArguments) {
  std::vector<float> a(4);
  EXPECT_FALSE(softmax(CpuContext{}, nullptr, a.data(), 1, 4).ok());
  EXPECT_FALSE(softmax(CpuContext{}, a.data(), nullptr, 1, 4).ok());
  EXPECT_FALSE(softmax(CpuContext{}, a.data(), a.data(), 1, 0).ok());
  EXPECT_FALSE(softmax(CpuContext{}, a.data(), a.data(), -1, 4).ok());
}

TEST(ArgmaxTest, ArgmaxMatchesNaiveScanAndBreaksTiesLow) {
  ThreadPool pool(2);
  const int64_t rows = 7, vocab = 3001;
  auto logits = testing::random_floats(rows * vocab, 8);
  logits[2 * vocab + 10] = 5.0f;  // tie in row 2: the lower index wins
  logits[2 * vocab + 20] = 5.0f;
  std::vector<int32_t> out(rows, -1);
  ASSERT_TRUE(argmax(CpuContext{&pool}, logits.data(), rows, vocab, out.data()).ok());
  for (int64_t r = 0; r < rows; ++r) {
    int32_t best = 0;
    for (int64_t i = 1; i < vocab; ++i) {
      if (logits[r * vocab + i] > logits[r * vocab + best]) best = static_cast<int32_t>(i);
    }
    EXPECT_EQ(out[r], best) << r;
  }
  EXPECT_EQ(out[2], 10);
}

TEST(ArgmaxTest, ArgmaxTreatsNanAsLargestLikeTorch) {
  std::vector<float> x = {1.0f, 3.0f, NAN, 7.0f, NAN};
  int32_t out = -1;
  ASSERT_TRUE(argmax(CpuContext{}, x.data(), 1, 5, &out).ok());
  EXPECT_EQ(out, 2);
}

TEST(ArgmaxTest, ArgmaxRejectsBadArguments) {
  std::vector<float> a(4);
  int32_t out;
  EXPECT_FALSE(argmax(CpuContext{}, nullptr, 1, 4, &out).ok());
  EXPECT_FALSE(argmax(CpuContext{}, a.data(), 1, 4, nullptr).ok());
  EXPECT_FALSE(argmax(CpuContext{}, a.data(), 1, 0, &out).ok());
  EXPECT_FALSE(argmax(CpuContext{}, a.data(), -3, 4, &out).ok());
}

TEST(EmbeddingTest, EmbeddingCopiesRowsForEveryDtype) {
  ThreadPool pool(2);
  const int64_t vocab = 50, dim = 37;
  for (DType t : testing::kAllDTypes) {
    const auto table = testing::store_as(testing::random_floats(vocab * dim, 9), t);
    const std::vector<int32_t> ids = {0, 49, 3, 3, 17};
    std::vector<float> out(ids.size() * dim, NAN);
    ASSERT_TRUE(embedding(CpuContext{&pool}, table.data(), t, vocab, dim, ids.data(), 5, out.data()).ok());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t d = 0; d < dim; ++d) ASSERT_EQ(out[i * dim + d], table.values[ids[i] * dim + d]) << dtype_name(t);
    }
  }
}

TEST(EmbeddingTest, EmbeddingRejectsOutOfRangeIdsAndBadArguments) {
  std::vector<float> table(4 * 2), out(4);
  const int32_t good[2] = {0, 3};
  const int32_t too_big[2] = {0, 4};
  const int32_t negative[2] = {-1, 0};
  const CpuContext ctx;
  EXPECT_TRUE(embedding(ctx, table.data(), DType::kF32, 4, 2, good, 2, out.data()).ok());
  const Status st = embedding(ctx, table.data(), DType::kF32, 4, 2, too_big, 2, out.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("ids[1] = 4"), std::string::npos) << st.message();
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 4, 2, negative, 2, out.data()).ok());
  EXPECT_FALSE(embedding(ctx, nullptr, DType::kF32, 4, 2, good, 2, out.data()).ok());
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 4, 2, nullptr, 2, out.data()).ok());
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 4, 2, good, 2, nullptr).ok());
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 0, 2, good, 2, out.data()).ok());
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 4, 0, good, 2, out.data()).ok());
  EXPECT_FALSE(embedding(ctx, table.data(), DType::kF32, 4, 2, good, -1, out.data()).ok());
}

}  // namespace
}  // namespace hotswap::kernels
