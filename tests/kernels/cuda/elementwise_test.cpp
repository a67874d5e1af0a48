// add and swiglu (CUDA) against naive loops, with aligned (vector) and misaligned (scalar)
// pointers, lengths that leave a tail, and aliasing outputs.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

TEST_F(CudaKernelTest, AddMatchesFloatAdditionExactly) {
  for (int64_t n : {1, 3, 4, 1027, 100000}) {
    for (int64_t offset : {0, 1}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " offset=" + std::to_string(offset));
      const auto y0 = testing::random_floats(n + offset, 61, -10.0f, 10.0f);
      const auto x = testing::random_floats(n + offset, 62, -10.0f, 10.0f);
      DeviceBuffer<float> d_y(y0);
      DeviceBuffer<float> d_x(x);
      ASSERT_TRUE(add(ctx_, d_y.get() + offset, d_x.get() + offset, n).ok());
      expect_clean();
      std::vector<float> want = y0;
      for (int64_t i = 0; i < n; ++i) want[offset + i] = y0[offset + i] + x[offset + i];
      EXPECT_TRUE(testing::bits_equal(d_y.download(), want));
    }
  }
}

TEST_F(CudaKernelTest, SwigluMatchesReferenceAndMayAliasItsInputs) {
  for (int64_t n : {1, 5, 1027, 65536}) {
    for (int64_t offset : {0, 2}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " offset=" + std::to_string(offset));
      const auto gate = testing::random_floats(n + offset, 63, -12.0f, 12.0f);
      const auto up = testing::random_floats(n + offset, 64, -3.0f, 3.0f);
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i) {
        const double g = gate[offset + i];
        want[i] = g / (1.0 + std::exp(-g)) * up[offset + i];
      }
      DeviceBuffer<float> d_gate(gate);
      DeviceBuffer<float> d_up(up);
      DeviceBuffer<float> d_out(n + offset);
      ASSERT_TRUE(swiglu(ctx_, d_gate.get() + offset, d_up.get() + offset, d_out.get() + offset, n).ok());
      expect_clean();
      auto out = d_out.download();
      testing::expect_close(std::vector<float>(out.begin() + offset, out.end()), want, 1e-7, 2e-6, "swiglu");

      ASSERT_TRUE(swiglu(ctx_, d_gate.get() + offset, d_up.get() + offset, d_gate.get() + offset, n).ok());
      auto in_place = d_gate.download();
      EXPECT_TRUE(testing::bits_equal(std::vector<float>(in_place.begin() + offset, in_place.end()),
                                      std::vector<float>(out.begin() + offset, out.end())))
          << "out aliasing gate changes the result";
      expect_clean();
    }
  }
}

TEST(CudaElementwiseArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  Status st = add(ctx, p, nullptr, 4);
  EXPECT_NE(st.message().find("add: x is null"), std::string::npos) << st.message();
  st = add(ctx, p, p, -1);
  EXPECT_NE(st.message().find("n must be >= 0"), std::string::npos) << st.message();
  st = swiglu(ctx, p, nullptr, p, 4);
  EXPECT_NE(st.message().find("swiglu: up is null"), std::string::npos) << st.message();
  EXPECT_TRUE(swiglu(ctx, nullptr, nullptr, nullptr, 0).ok());
}

}  // namespace
}  // namespace hotswap::kernels::cuda
