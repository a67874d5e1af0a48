// Scalar dtype conversions. f16 -> f32 is a constant-initialised 65536-entry table (256 KiB,
// built at compile time, so no static-init order hazard); f32 -> f16 is bit arithmetic with
// round-to-nearest-even, as torch's .half() does.
#include "kernels/dtype.h"

#include <bit>

#include "kernels/cpu/f16_table.h"

namespace hotswap::kernels {
namespace {

constexpr uint32_t f16_bits_to_f32_bits(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return sign | 0x7f800000u | (mant << 13);  // inf, NaN with its payload
  if (exp != 0) return sign | ((exp + 112) << 23) | (mant << 13);
  if (mant == 0) return sign;
  // Subnormal: mant * 2^-24. Shift the leading one up to the implicit-bit position.
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return sign | (e << 23) | ((mant & 0x3ffu) << 13);
}

constexpr std::array<float, 65536> make_f16_table() {
  std::array<float, 65536> t{};
  for (uint32_t h = 0; h < 65536; ++h) t[h] = std::bit_cast<float>(f16_bits_to_f32_bits(static_cast<uint16_t>(h)));
  return t;
}

}  // namespace

namespace detail {
constexpr std::array<float, 65536> kF16ToF32Table = make_f16_table();
}  // namespace detail

std::optional<DType> parse_dtype(std::string_view name) {
  if (name == "F32" || name == "f32" || name == "float32") return DType::kF32;
  if (name == "F16" || name == "f16" || name == "float16") return DType::kF16;
  if (name == "BF16" || name == "bf16" || name == "bfloat16") return DType::kBF16;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  return detail::kF16ToF32Table[h];
}

uint16_t f32_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) {
    // NaN: keep the top payload bits and force the quiet bit so the payload cannot become 0 (inf).
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  }
  // 65520 is halfway between 65504 (max f16, odd mantissa) and 65536: ties-to-even goes up to inf.
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (x >= 0x38800000u) {
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even. A
    // carry out of the mantissa correctly bumps the exponent.
    uint32_t rounded = x - 0x38000000u + 0xfffu + ((x >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rounded >> 13));
  }
  // At or below 2^-25 (half the smallest subnormal) ties-to-even gives zero.
  if (x <= 0x33000000u) return sign;
  // Subnormal: value = mant * 2^(e-150), in units of 2^-24 that is mant >> (126 - e).
  uint32_t e = x >> 23;
  uint32_t mant = (x & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - e;  // 14..24
  uint32_t h = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the smallest normal: correct
  return static_cast<uint16_t>(sign | h);
}

}  // namespace hotswap::kernels
