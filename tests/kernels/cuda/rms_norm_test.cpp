// rms_norm (CUDA) against a naive double-precision LlamaRMSNorm.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, int64_t rows, int64_t dim,
                              float eps) {
  std::vector<double> y(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t d = 0; d < dim; ++d) ss += double{x[r * dim + d]} * x[r * dim + d];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t d = 0; d < dim; ++d) y[r * dim + d] = w[d] * (x[r * dim + d] * inv);
  }
  return y;
}

TEST_F(CudaKernelTest, RmsNormMatchesReferenceInEveryDtype) {
  constexpr float kEps = 1e-5f;
  for (int64_t dim : {1, 37, 1000, 4096}) {
    constexpr int64_t kRows = 5;
    const auto x = testing::random_floats(kRows * dim, 21, -4.0f, 4.0f);
    for (DType t : testing::kAllDTypes) {
      SCOPED_TRACE(testing::dtype_label(t) + " dim=" + std::to_string(dim));
      const testing::Stored w = testing::store_as(testing::random_floats(dim, 22, 0.5f, 1.5f), t);
      DeviceBuffer<float> d_x(x);
      DeviceBuffer<uint8_t> d_w(w.bytes);
      DeviceBuffer<float> d_y(kRows * dim);
      ASSERT_TRUE(rms_norm(ctx_, d_x.get(), d_w.get(), t, d_y.get(), kRows, dim, kEps).ok());
      expect_clean();
      testing::expect_close(d_y.download(), reference(x, w.values, kRows, dim, kEps), 1e-6, 5e-6, "rms_norm");
    }
  }
}

TEST_F(CudaKernelTest, RmsNormInPlaceAndBatchedGiveTheSameBits) {
  constexpr int64_t kRows = 7;
  constexpr int64_t kDim = 777;
  const auto x = testing::random_floats(kRows * kDim, 23, -2.0f, 2.0f);
  const testing::Stored w = testing::store_as(testing::random_floats(kDim, 24), DType::kBF16);
  DeviceBuffer<uint8_t> d_w(w.bytes);
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<float> d_y(kRows * kDim);
  ASSERT_TRUE(rms_norm(ctx_, d_x.get(), d_w.get(), DType::kBF16, d_y.get(), kRows, kDim, 1e-6f).ok());
  const auto batched = d_y.download();

  DeviceBuffer<float> d_inplace(x);
  ASSERT_TRUE(rms_norm(ctx_, d_inplace.get(), d_w.get(), DType::kBF16, d_inplace.get(), kRows, kDim, 1e-6f).ok());
  EXPECT_TRUE(testing::bits_equal(d_inplace.download(), batched));

  DeviceBuffer<float> d_one(kDim);
  ASSERT_TRUE(rms_norm(ctx_, d_x.get() + 3 * kDim, d_w.get(), DType::kBF16, d_one.get(), 1, kDim, 1e-6f).ok());
  const std::vector<float> row3(batched.begin() + 3 * kDim, batched.begin() + 4 * kDim);
  EXPECT_TRUE(testing::bits_equal(d_one.download(), row3));
  expect_clean();
}

TEST(CudaRmsNormArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  Status st = rms_norm(ctx, p, p, DType::kF32, p, 2, 0, 1e-5f);
  EXPECT_NE(st.message().find("dim"), std::string::npos) << st.message();
  st = rms_norm(ctx, p, p, DType::kF32, p, 2, 8, -1.0f);
  EXPECT_NE(st.message().find("eps"), std::string::npos) << st.message();
  st = rms_norm(ctx, p, nullptr, DType::kF32, p, 2, 8, 1e-5f);
  EXPECT_NE(st.message().find("w is null"), std::string::npos) << st.message();
  st = rms_norm(ctx, p, p, DType::kF32, p + 1, 2, 8, 1e-5f);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("overlaps"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
