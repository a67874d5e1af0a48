// The f16 -> f32 lookup table behind f16_to_f32, visible to kernels that convert whole rows so
// the conversion inlines to one load per element instead of a call.
#pragma once

#include <array>

namespace hotswap::kernels::detail {

// kF16ToF32Table[h] is the f32 value of the f16 bit pattern h, exact (subnormals, inf, NaN
// payloads). Constant-initialised, so it is usable from other static initialisers.
extern const std::array<float, 65536> kF16ToF32Table;

}  // namespace hotswap::kernels::detail
