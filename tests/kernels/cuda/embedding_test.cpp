// embedding (CUDA) against a naive lookup, in every table dtype.
#include <gtest/gtest.h>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

TEST_F(CudaKernelTest, EmbeddingCopiesRowsExactlyInEveryDtype) {
  constexpr int64_t kVocab = 50;
  constexpr int64_t kDim = 70;
  const std::vector<int32_t> ids = {0, 49, 3, 3, 17, 48, 1, 0, 25};
  const int64_t n = static_cast<int64_t>(ids.size());
  for (DType t : testing::kAllDTypes) {
    SCOPED_TRACE(testing::dtype_label(t));
    const testing::Stored table = testing::store_as(testing::random_floats(kVocab * kDim, 11, -3.0f, 3.0f), t);
    DeviceBuffer<uint8_t> d_table(table.bytes);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<float> d_out(n * kDim);
    ASSERT_TRUE(embedding(ctx_, d_table.get(), t, kVocab, kDim, d_ids.get(), n, d_out.get()).ok());
    expect_clean();
    std::vector<float> want(n * kDim);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t d = 0; d < kDim; ++d) want[i * kDim + d] = table.values[ids[i] * kDim + d];
    }
    EXPECT_TRUE(testing::bits_equal(d_out.download(), want));
  }
}

TEST_F(CudaKernelTest, EmbeddingOutOfRangeIdWritesNanRowAndIsReported) {
  constexpr int64_t kVocab = 10;
  constexpr int64_t kDim = 33;
  const std::vector<int32_t> ids = {2, -1, 10, 9};
  const auto values = testing::random_floats(kVocab * kDim, 12);
  DeviceBuffer<float> d_table(values);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> d_out(ids.size() * kDim);
  ASSERT_TRUE(embedding(ctx_, d_table.get(), DType::kF32, kVocab, kDim, d_ids.get(), 4, d_out.get()).ok());
  const Status st = take_index_errors(ctx_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("embedding: ids"), std::string::npos) << st.message();
  const auto out = d_out.download();
  for (int64_t d = 0; d < kDim; ++d) {
    EXPECT_EQ(out[d], values[2 * kDim + d]);
    EXPECT_TRUE(std::isnan(out[1 * kDim + d]));
    EXPECT_TRUE(std::isnan(out[2 * kDim + d]));
    EXPECT_EQ(out[3 * kDim + d], values[9 * kDim + d]);
  }
}

TEST_F(CudaKernelTest, EmbeddingOfNoTokensLaunchesNothing) {
  EXPECT_TRUE(embedding(ctx_, nullptr, DType::kF32, 10, 4, nullptr, 0, nullptr).ok());
  expect_clean();
}

// Argument checks run on the host before any CUDA call, so these need no device.
TEST(CudaEmbeddingArgumentsTest, RejectsBadArgumentsNamingTheParameter) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  const auto* ids = reinterpret_cast<const int32_t*>(p);
  Status st = embedding(ctx, nullptr, DType::kF32, 10, 4, ids, 2, p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("table"), std::string::npos) << st.message();
  st = embedding(ctx, p, DType::kF32, 0, 4, ids, 2, p);
  EXPECT_NE(st.message().find("vocab"), std::string::npos) << st.message();
  st = embedding(ctx, p, DType::kF32, 10, -1, ids, 2, p);
  EXPECT_NE(st.message().find("dim"), std::string::npos) << st.message();
  st = embedding(ctx, p, DType::kF32, 10, 4, nullptr, 2, p);
  EXPECT_NE(st.message().find("ids"), std::string::npos) << st.message();
  st = embedding(ctx, p, static_cast<DType>(9), 10, 4, ids, 2, p);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("dtype"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
