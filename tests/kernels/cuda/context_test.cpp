// The CUDA context's lifecycle, error mapping, and the device-side index-error channel.
#include <gtest/gtest.h>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;

// Runs everywhere: the mapping from CUDA error codes needs no device.
TEST(CudaCheckTest, MapsCudaErrorsToStatusCodes) {
  EXPECT_TRUE(check_cuda(cudaSuccess, "x").ok());
  const Status oom = check_cuda(cudaErrorMemoryAllocation, "alloc kv pool");
  EXPECT_EQ(oom.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(oom.message().find("alloc kv pool"), std::string::npos) << oom.message();
  EXPECT_NE(oom.message().find("cudaErrorMemoryAllocation"), std::string::npos) << oom.message();
  EXPECT_EQ(check_cuda(cudaErrorNoDevice, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(check_cuda(cudaErrorInsufficientDriver, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(check_cuda(cudaErrorInvalidValue, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(check_cuda(cudaErrorIllegalAddress, "x").code(), StatusCode::kInternal);
}

TEST(CudaCheckTest, DeviceCountAnswersWithoutThrowingAndIsStable) {
  const int n = device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(device_count(), n);
}

TEST(CudaCheckTest, CreateContextWithoutDeviceIsUnavailable) {
  if (device_count() > 0) GTEST_SKIP() << "a CUDA device is present; this checks the no-device answer";
  const auto ctx = create_context(0);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), StatusCode::kUnavailable);
}

TEST_F(CudaKernelTest, FreshContextHasNoIndexErrors) {
  ASSERT_NE(ctx_.stream, nullptr);
  ASSERT_NE(ctx_.index_errors, nullptr);
  EXPECT_TRUE(synchronize(ctx_).ok());
  EXPECT_TRUE(take_index_errors(ctx_).ok());
}

TEST_F(CudaKernelTest, CreateContextRejectsMissingDevice) {
  const auto ctx = create_context(device_count() + 3);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), StatusCode::kUnavailable);
}

TEST_F(CudaKernelTest, IndexErrorsAreReportedOnceAndCleared) {
  const std::vector<int32_t> ids = {0, 7};
  testing::DeviceBuffer<int32_t> d_ids(ids);
  testing::DeviceBuffer<float> table(std::vector<float>(4 * 3, 1.0f));
  testing::DeviceBuffer<float> out(2 * 3);
  ASSERT_TRUE(embedding(ctx_, table.get(), DType::kF32, 4, 3, d_ids.get(), 2, out.get()).ok());
  const Status st = take_index_errors(ctx_);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("embedding"), std::string::npos) << st.message();
  EXPECT_TRUE(take_index_errors(ctx_).ok()) << "the error word is cleared after it is read";
}

TEST_F(CudaKernelTest, ContextWithoutErrorWordStillGuardsIndices) {
  CudaContext quiet = ctx_;
  quiet.index_errors = nullptr;
  const std::vector<int32_t> ids = {-5};
  testing::DeviceBuffer<int32_t> d_ids(ids);
  testing::DeviceBuffer<float> table(std::vector<float>(4 * 3, 1.0f));
  testing::DeviceBuffer<float> out(3);
  ASSERT_TRUE(embedding(quiet, table.get(), DType::kF32, 4, 3, d_ids.get(), 1, out.get()).ok());
  EXPECT_TRUE(take_index_errors(quiet).ok());
  for (float v : out.download()) EXPECT_TRUE(std::isnan(v));
  EXPECT_TRUE(take_index_errors(ctx_).ok()) << "nothing was reported through the other context's word";
}

}  // namespace
}  // namespace hotswap::kernels::cuda
