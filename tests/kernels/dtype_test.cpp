#include "kernels/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

namespace hotswap::kernels {
namespace {

// The value of an f16 pattern from the IEEE definition, computed independently of the kernel.
double f16_reference(uint16_t h) {
  const int sign = h >> 15;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else if (exp == 31) {
    v = mant == 0 ? INFINITY : NAN;
  } else {
    v = std::ldexp(static_cast<double>(1024 + mant), exp - 25);
  }
  return sign ? -v : v;
}

bool is_f16_nan(uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

TEST(DTypeTest, ParseDtypeAcceptsSafetensorsAndTorchSpellings) {
  EXPECT_EQ(parse_dtype("F32"), DType::kF32);
  EXPECT_EQ(parse_dtype("f32"), DType::kF32);
  EXPECT_EQ(parse_dtype("float32"), DType::kF32);
  EXPECT_EQ(parse_dtype("F16"), DType::kF16);
  EXPECT_EQ(parse_dtype("f16"), DType::kF16);
  EXPECT_EQ(parse_dtype("float16"), DType::kF16);
  EXPECT_EQ(parse_dtype("BF16"), DType::kBF16);
  EXPECT_EQ(parse_dtype("bf16"), DType::kBF16);
  EXPECT_EQ(parse_dtype("bfloat16"), DType::kBF16);
}

TEST(DTypeTest, ParseDtypeRejectsUnknownNames) {
  EXPECT_FALSE(parse_dtype("").has_value());
  EXPECT_FALSE(parse_dtype("F64").has_value());
  EXPECT_FALSE(parse_dtype("I8").has_value());
  EXPECT_FALSE(parse_dtype("Bf16").has_value());
}

TEST(DTypeTest, F16ToF32IsExactForAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const double ref = f16_reference(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(f)) << "h=" << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), ref) << "h=" << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << "h=" << h;
    }
  }
}

TEST(DTypeTest, F16RoundTripsExactlyForAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = f32_to_f16(f16_to_f32(static_cast<uint16_t>(h)));
    if (is_f16_nan(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(is_f16_nan(back)) << "h=" << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << "h=" << h;
    } else {
      EXPECT_EQ(back, h) << "h=" << h;
    }
  }
}

// Every midpoint between neighbouring finite f16 values is exact in f32; it must round to the
// neighbour with the even mantissa, and one f32 ulp either side must round to the nearer one.
TEST(DTypeTest, F32ToF16RoundsMidpointsToEven) {
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const float lo = f16_to_f32(static_cast<uint16_t>(h));
    const float hi = f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + hi) / 2);
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    EXPECT_EQ(f32_to_f16(mid), even) << "h=" << h;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), h) << "h=" << h;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid, INFINITY)), h + 1) << "h=" << h;
    EXPECT_EQ(f32_to_f16(-mid), even | 0x8000) << "h=" << h;
  }
}

TEST(DTypeTest, F32ToF16HandlesSpecialValues) {
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // the tie above the max rounds to even: inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: ties to 0
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // largest subnormal + half: smallest normal
  EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
  EXPECT_TRUE(is_f16_nan(f32_to_f16(NAN)));
  EXPECT_TRUE(is_f16_nan(f32_to_f16(-NAN)));
  // A NaN whose payload sits only in the low f32 bits must not become inf.
  EXPECT_TRUE(is_f16_nan(f32_to_f16(std::bit_cast<float>(0x7f800001u))));
}

#if defined(__FLT16_MAX__)
TEST(DTypeTest, F32ToF16MatchesCompilerFloat16OnRandomBits) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    const uint16_t expect = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(f32_to_f16(f), expect) << "bits=" << std::bit_cast<uint32_t>(f);
  }
}
#endif

TEST(DTypeTest, Bf16RoundTripsExactlyAndRoundsMidpointsToEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_bf16(f), h);
  }
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
}

TEST(DTypeTest, LoadAndStoreConvertThroughTheNamedDtype) {
  uint16_t buf16[2];
  float buf32[1];
  store_from_f32(buf16, DType::kF16, 1, 1.5f);
  EXPECT_EQ(buf16[1], 0x3e00);
  EXPECT_EQ(load_as_f32(buf16, DType::kF16, 1), 1.5f);
  store_from_f32(buf16, DType::kBF16, 0, -2.0f);
  EXPECT_EQ(buf16[0], 0xc000);
  EXPECT_EQ(load_as_f32(buf16, DType::kBF16, 0), -2.0f);
  store_from_f32(buf32, DType::kF32, 0, 3.25f);
  EXPECT_EQ(load_as_f32(buf32, DType::kF32, 0), 3.25f);
  EXPECT_STREQ(dtype_name(DType::kBF16), "BF16");
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
}

}  // namespace
}  // namespace hotswap::kernels
