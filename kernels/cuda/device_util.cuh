// Device-side helpers shared by the CUDA kernels: element loads and stores in each DType, the
// KV layout's index arithmetic, fixed-order warp and block reductions, device-side index-error
// reporting, and the launch-error check. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "common/status.h"
#include "kernels/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace hotswap::kernels::cuda::detail {

// The argument-check helpers shared with the CPU kernels (kernels/check.h), for the checks only
// a launch wrapper makes (grid limits, aliasing its kernel cannot tolerate).
using kernels::detail::check_grid;
using kernels::detail::invalid;
using kernels::detail::overlaps;
using kernels::detail::str_cat;

inline cudaStream_t stream_of(const CudaContext& ctx) {
  return static_cast<cudaStream_t>(ctx.stream);
}

// After a launch: the launch's own error (bad configuration, no device), as a Status.
inline Status launch_status(const char* op) {
  return check_cuda(static_cast<int>(cudaGetLastError()), op);
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

template <DType T>
using DTypeTag = std::integral_constant<DType, T>;

// Calls f(DTypeTag<T>{}) for the T that t names, so a wrapper instantiates its kernel template
// once per dtype: `with_dtype(t, [&](auto tag) { kernel<decltype(tag)::value><<<...>>>(...); })`.
template <typename F>
Status with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kF32:
      return f(DTypeTag<DType::kF32>{});
    case DType::kF16:
      return f(DTypeTag<DType::kF16>{});
    case DType::kBF16:
      return f(DTypeTag<DType::kBF16>{});
  }
  return invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(t)));
}

// ---- Device index errors: one bit per (op, array). Messages live in context.cu. ----

enum IndexError : unsigned int {
  kEmbeddingIds = 1u << 0,
  kRopePositions = 1u << 1,
  kKvWriteSlots = 1u << 2,
  kAttentionTokens = 1u << 3,      // token_seq or token_pos negative, or past block_table_stride
  kAttentionBlockTable = 1u << 4,  // a used block_tables entry outside the pool
  kGatherBlockIds = 1u << 5,
  kScatterBlockIds = 1u << 6,
  kScatterDuplicateIds = 1u << 7,
};

__device__ __forceinline__ void raise_index_error(unsigned int* errors, IndexError bit) {
  if (errors != nullptr) atomicOr(errors, static_cast<unsigned int>(bit));
}

// ---- Elements in each DType. ----

template <DType T>
struct Storage;
template <>
struct Storage<DType::kF32> {
  using type = float;
};
template <>
struct Storage<DType::kF16> {
  using type = uint16_t;
};
template <>
struct Storage<DType::kBF16> {
  using type = uint16_t;
};

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}

// Round to nearest even, NaN kept NaN with its payload: bit for bit what f32_to_bf16 in
// kernels/dtype.h does, so CPU and GPU store the same bf16 KV.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  const uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

template <DType T>
__device__ __forceinline__ float load_f32(const void* p, int64_t i) {
  if constexpr (T == DType::kF32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (T == DType::kF16) {
    return __half2float(__ushort_as_half(static_cast<const unsigned short*>(p)[i]));
  } else {
    return bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

template <DType T>
__device__ __forceinline__ void store_f32(void* p, int64_t i, float v) {
  if constexpr (T == DType::kF32) {
    static_cast<float*>(p)[i] = v;
  } else if constexpr (T == DType::kF16) {
    static_cast<unsigned short*>(p)[i] = __half_as_ushort(__float2half_rn(v));
  } else {
    static_cast<uint16_t*>(p)[i] = f32_to_bf16_bits(v);
  }
}

// Eight consecutive elements starting at i, as f32. Needs p + i aligned to 16 bytes (and, for
// f32, to 16 bytes as well: two float4 loads).
template <DType T>
__device__ __forceinline__ void load8_f32(const void* p, int64_t i, float (&v)[8]) {
  if constexpr (T == DType::kF32) {
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
    const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p) + i);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint16_t lo = static_cast<uint16_t>(words[k] & 0xffffu);
      const uint16_t hi = static_cast<uint16_t>(words[k] >> 16);
      if constexpr (T == DType::kF16) {
        v[2 * k] = __half2float(__ushort_as_half(lo));
        v[2 * k + 1] = __half2float(__ushort_as_half(hi));
      } else {
        v[2 * k] = bf16_bits_to_f32(lo);
        v[2 * k + 1] = bf16_bits_to_f32(hi);
      }
    }
  }
}

inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- The KV layout, callable on the device (same arithmetic as KvLayout::index). ----

struct DeviceKvLayout {
  int n_layers;
  int n_kv_heads;
  int head_dim;
  int block_size;
  int64_t block_elems;

  static DeviceKvLayout from(const KvLayout& l) {
    return DeviceKvLayout{l.n_layers, l.n_kv_heads, l.head_dim, l.block_size, l.block_elems()};
  }

  __host__ __device__ int64_t index(int64_t block, int layer, int kv, int head, int slot) const {
    return block * block_elems + ((((int64_t{layer} * 2 + kv) * n_kv_heads + head) * block_size + slot) * head_dim);
  }
};

// ---- Reductions in a fixed order (the order depends only on blockDim, never on the data). ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block, returned to every thread. scratch: kThreads / 32 floats of shared memory.
// Ends with a barrier, so scratch may be reused right away.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  static_assert(kThreads % 32 == 0, "whole warps");
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* scratch) {
  static_assert(kThreads % 32 == 0, "whole warps");
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float m = scratch[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();
  return m;
}

}  // namespace hotswap::kernels::cuda::detail
