// softmax and argmax (CUDA) against naive loops, including -inf, NaN and ties.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

std::vector<double> reference_softmax(const std::vector<float>& logits, int64_t rows, int64_t vocab) {
  std::vector<double> p(rows * vocab);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i) m = std::max(m, double{logits[r * vocab + i]});
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[r * vocab + i] - m);
    for (int64_t i = 0; i < vocab; ++i) p[r * vocab + i] = std::exp(logits[r * vocab + i] - m) / sum;
  }
  return p;
}

TEST_F(CudaKernelTest, SoftmaxMatchesReferenceAndWorksInPlace) {
  for (int64_t vocab : {1, 7, 1000, 128256}) {
    constexpr int64_t kRows = 3;
    SCOPED_TRACE("vocab=" + std::to_string(vocab));
    auto logits = testing::random_floats(kRows * vocab, 101, -20.0f, 20.0f);
    if (vocab > 3) logits[vocab + 2] = -INFINITY;  // a masked-out logit in row 1
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<float> d_probs(kRows * vocab);
    ASSERT_TRUE(softmax(ctx_, d_logits.get(), d_probs.get(), kRows, vocab).ok());
    expect_clean();
    const auto probs = d_probs.download();
    testing::expect_close(probs, reference_softmax(logits, kRows, vocab), 1e-9, 3e-5, "softmax");

    ASSERT_TRUE(softmax(ctx_, d_logits.get(), d_logits.get(), kRows, vocab).ok());
    EXPECT_TRUE(testing::bits_equal(d_logits.download(), probs)) << "in place differs from out of place";
    expect_clean();
  }
}

TEST_F(CudaKernelTest, SoftmaxPoisonsRowsWithNanOrOnlyMinusInfinity) {
  constexpr int64_t kVocab = 300;
  auto logits = testing::random_floats(3 * kVocab, 102);
  logits[5] = NAN;
  for (int64_t i = 0; i < kVocab; ++i) logits[kVocab + i] = -INFINITY;
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<float> d_probs(3 * kVocab);
  ASSERT_TRUE(softmax(ctx_, d_logits.get(), d_probs.get(), 3, kVocab).ok());
  const auto p = d_probs.download();
  for (int64_t i = 0; i < 2 * kVocab; ++i) EXPECT_TRUE(std::isnan(p[i])) << i;
  double sum = 0.0;
  for (int64_t i = 2 * kVocab; i < 3 * kVocab; ++i) sum += p[i];
  EXPECT_NEAR(sum, 1.0, 1e-5);
  expect_clean();
}

TEST_F(CudaKernelTest, ArgmaxTakesLargestLowestIndexAndNanFirst) {
  constexpr int64_t kVocab = 5000;
  constexpr int64_t kRows = 6;
  auto logits = testing::random_floats(kRows * kVocab, 103, -5.0f, 5.0f);
  std::vector<int32_t> want(kRows);
  // Row 0: plain random. Row 1: a tie at 3000 and 7, lowest wins.
  logits[kVocab + 3000] = 9.0f;
  logits[kVocab + 7] = 9.0f;
  // Row 2: NaN at 100 and 50: the first NaN wins over anything. Row 3: all equal.
  logits[2 * kVocab + 100] = NAN;
  logits[2 * kVocab + 50] = NAN;
  logits[2 * kVocab + 4000] = INFINITY;
  for (int64_t i = 0; i < kVocab; ++i) logits[3 * kVocab + i] = 1.5f;
  // Row 4: all -inf. Row 5: the max in the last element.
  for (int64_t i = 0; i < kVocab; ++i) logits[4 * kVocab + i] = -INFINITY;
  logits[5 * kVocab + kVocab - 1] = 100.0f;
  for (int64_t r = 0; r < kRows; ++r) {
    int64_t best = 0;
    for (int64_t i = 0; i < kVocab; ++i) {
      const float v = logits[r * kVocab + i];
      const float b = logits[r * kVocab + best];
      if (std::isnan(b)) break;
      if (std::isnan(v) || v > b) best = i;
    }
    want[r] = static_cast<int32_t>(best);
  }
  ASSERT_EQ(want[1], 7);
  ASSERT_EQ(want[2], 50);
  ASSERT_EQ(want[3], 0);
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_out(kRows);
  ASSERT_TRUE(argmax(ctx_, d_logits.get(), kRows, kVocab, d_out.get()).ok());
  expect_clean();
  EXPECT_EQ(d_out.download(), want);
}

TEST(CudaSoftmaxArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  Status st = softmax(ctx, p, p + 1, 2, 8);
  EXPECT_NE(st.message().find("partially overlaps"), std::string::npos) << st.message();
  st = softmax(ctx, p, p, 2, 0);
  EXPECT_NE(st.message().find("vocab"), std::string::npos) << st.message();
  st = argmax(ctx, p, 2, int64_t{1} << 32, reinterpret_cast<int32_t*>(p));
  EXPECT_NE(st.message().find("int32"), std::string::npos) << st.message();
  st = argmax(ctx, p, 2, 8, nullptr);
  EXPECT_NE(st.message().find("out is null"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
