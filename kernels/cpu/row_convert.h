// Converting runs of weight / KV elements between their stored dtype and f32. Shared by the
// kernels that read or write a row at a time (embedding, kv cache, attention).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cpu/f16_table.h"
#include "kernels/dtype.h"

namespace hotswap::kernels::detail {

// out[0..count) = base[offset..offset+count) as f32.
inline void load_row_f32(const void* base, DType t, int64_t offset, int64_t count, float* out) {
  switch (t) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(base) + offset, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < count; ++i) out[i] = kF16ToF32Table[p[i]];
      return;
    }
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < count; ++i) {
        uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      return;
    }
  }
}

// base[offset..offset+count) = in[0..count), rounded to t (nearest even).
inline void store_row_from_f32(void* base, DType t, int64_t offset, int64_t count, const float* in) {
  switch (t) {
    case DType::kF32:
      std::memcpy(static_cast<float*>(base) + offset, in, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::kF16: {
      uint16_t* p = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < count; ++i) p[i] = f32_to_f16(in[i]);
      return;
    }
    case DType::kBF16: {
      uint16_t* p = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < count; ++i) p[i] = f32_to_bf16(in[i]);
      return;
    }
  }
}

}  // namespace hotswap::kernels::detail
