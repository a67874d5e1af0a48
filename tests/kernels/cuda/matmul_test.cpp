// matmul (CUDA) against a naive double-precision product, and its batch invariance: a row gives
// the same bits whether it runs alone (gemv kernel) or in a batch (tiled kernel).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

struct Reference {
  std::vector<double> y;
  std::vector<double> abs_sum;  // sum |x * w| (+ |bias|): scales the f32 rounding error
};

Reference reference(const std::vector<float>& x, int64_t rows, int64_t in, const std::vector<float>& w, int64_t out,
                    const std::vector<float>* bias) {
  Reference ref;
  ref.y.resize(rows * out);
  ref.abs_sum.resize(rows * out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0.0;
      double a = 0.0;
      for (int64_t i = 0; i < in; ++i) {
        const double p = double{x[r * in + i]} * w[o * in + i];
        s += p;
        a += std::fabs(p);
      }
      if (bias != nullptr) {
        s += (*bias)[o];
        a += std::fabs((*bias)[o]);
      }
      ref.y[r * out + o] = s;
      ref.abs_sum[r * out + o] = a;
    }
  }
  return ref;
}

void expect_matmul_close(const std::vector<float>& got, const Reference& ref, int64_t in, const std::string& what) {
  ASSERT_EQ(got.size(), ref.y.size());
  // f32 summation of `in` products: error <= ~in * 2^-24 * sum |products|.
  const double rel = (static_cast<double>(in) + 2.0) * 6e-8;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::fabs(got[i] - ref.y[i]) > rel * ref.abs_sum[i] + 1e-6) {
      if (bad < 3) ADD_FAILURE() << what << ": y[" << i << "] = " << got[i] << ", want " << ref.y[i];
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

TEST_F(CudaKernelTest, MatmulMatchesReferenceForEveryShapeAndDtype) {
  for (DType t : testing::kAllDTypes) {
    for (int64_t in : {64, 300, 520}) {
      for (int64_t out : {5, 130}) {
        for (int64_t rows : {1, 3, 8, 9, 70}) {
          for (bool with_bias : {false, true}) {
            const std::string what = testing::dtype_label(t) + " rows=" + std::to_string(rows) +
                                     " in=" + std::to_string(in) + " out=" + std::to_string(out) +
                                     (with_bias ? " bias" : "");
            SCOPED_TRACE(what);
            const auto x = testing::random_floats(rows * in, 31 + static_cast<uint32_t>(rows));
            const testing::Stored w = testing::store_as(testing::random_floats(out * in, 32), t);
            const testing::Stored b = testing::store_as(testing::random_floats(out, 33), t);
            DeviceBuffer<float> d_x(x);
            DeviceBuffer<uint8_t> d_w(w.bytes);
            DeviceBuffer<uint8_t> d_b(b.bytes);
            DeviceBuffer<float> d_y(rows * out);
            ASSERT_TRUE(
                matmul(ctx_, d_x.get(), rows, in, d_w.get(), t, out, with_bias ? d_b.get() : nullptr, d_y.get()).ok());
            expect_clean();
            expect_matmul_close(d_y.download(), reference(x, rows, in, w.values, out, with_bias ? &b.values : nullptr),
                                in, what);
          }
        }
      }
    }
  }
}

// The big batch runs the tiled kernel; single rows and small groups run the gemv kernel (with
// 1, 4 or 8 row slots). All must agree bit for bit, with aligned (vector loads) and misaligned
// (scalar loads) x, and for `in` that is and is not a multiple of the 256-wide segment.
TEST_F(CudaKernelTest, MatmulRowGivesSameBitsAloneOrBatched) {
  constexpr int64_t kRows = 70;
  constexpr int64_t kOut = 67;
  for (DType t : testing::kAllDTypes) {
    for (int64_t in : {256, 520, 300}) {
      for (int64_t misalign : {0, 1}) {
        SCOPED_TRACE(testing::dtype_label(t) + " in=" + std::to_string(in) + " misalign=" + std::to_string(misalign));
        std::vector<float> x_host = testing::random_floats(kRows * in + misalign, 41, -2.0f, 2.0f);
        const testing::Stored w = testing::store_as(testing::random_floats(kOut * in, 42), t);
        const testing::Stored b = testing::store_as(testing::random_floats(kOut, 43), t);
        DeviceBuffer<float> d_x(x_host);
        DeviceBuffer<uint8_t> d_w(w.bytes);
        DeviceBuffer<uint8_t> d_b(b.bytes);
        const float* x = d_x.get() + misalign;
        DeviceBuffer<float> d_all(kRows * kOut);
        ASSERT_TRUE(matmul(ctx_, x, kRows, in, d_w.get(), t, kOut, d_b.get(), d_all.get()).ok());
        const auto all = d_all.download();
        for (int64_t group : {1, 3, 5, 8}) {
          for (int64_t r0 = 0; r0 + group <= kRows; r0 += 13) {
            DeviceBuffer<float> d_part(group * kOut);
            ASSERT_TRUE(matmul(ctx_, x + r0 * in, group, in, d_w.get(), t, kOut, d_b.get(), d_part.get()).ok());
            const std::vector<float> want(all.begin() + r0 * kOut, all.begin() + (r0 + group) * kOut);
            EXPECT_TRUE(testing::bits_equal(d_part.download(), want)) << "rows " << r0 << ".." << r0 + group - 1;
          }
        }
        expect_clean();
      }
    }
  }
}

TEST_F(CudaKernelTest, MatmulLargeInputDimensionUsesManySegments) {
  constexpr int64_t kIn = 4096 + 72;
  constexpr int64_t kOut = 300;
  for (int64_t rows : {1, 20}) {
    const auto x = testing::random_floats(rows * kIn, 51);
    const testing::Stored w = testing::store_as(testing::random_floats(kOut * kIn, 52), DType::kBF16);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<uint8_t> d_w(w.bytes);
    DeviceBuffer<float> d_y(rows * kOut);
    ASSERT_TRUE(matmul(ctx_, d_x.get(), rows, kIn, d_w.get(), DType::kBF16, kOut, nullptr, d_y.get()).ok());
    expect_clean();
    expect_matmul_close(d_y.download(), reference(x, rows, kIn, w.values, kOut, nullptr), kIn,
                        "rows=" + std::to_string(rows));
  }
}

TEST(CudaMatmulArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  float* far = testing::fake_device_ptr(1 << 20);
  Status st = matmul(ctx, p, 2, 0, p, DType::kF32, 4, nullptr, far);
  EXPECT_NE(st.message().find("in must be > 0"), std::string::npos) << st.message();
  st = matmul(ctx, p, 2, 8, nullptr, DType::kF32, 4, nullptr, far);
  EXPECT_NE(st.message().find("w is null"), std::string::npos) << st.message();
  st = matmul(ctx, p, -1, 8, p, DType::kF32, 4, nullptr, far);
  EXPECT_NE(st.message().find("rows"), std::string::npos) << st.message();
  st = matmul(ctx, p, 2, 8, p, DType::kF32, 4, nullptr, p + 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("y overlaps x"), std::string::npos) << st.message();
  EXPECT_TRUE(matmul(ctx, nullptr, 0, 8, nullptr, DType::kF32, 4, nullptr, nullptr).ok()) << "no rows: no-op";
}

}  // namespace
}  // namespace hotswap::kernels::cuda
