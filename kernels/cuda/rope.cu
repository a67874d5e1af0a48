// Rotate-half RoPE on the GPU (transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb),
// in place on q and k.
//
// inv_freq[j] = 1 / theta^(2j / head_dim) is computed on the host with the same expression as
// the CPU twin (so the same bits) and passed by value. One thread block per token: its threads
// first compute cos/sin of pos * inv_freq[j] into shared memory, then rotate every (head, j)
// pair of that token's q and k heads. The rotation is written with explicitly rounded
// multiplies and adds (no fused multiply-add), as torch computes q*cos + rotate_half(q)*sin.
// Traffic: one read and one write of q and k. A negative position writes NaN into the token's
// q and k and raises kRopePositions.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kMaxHeadDim = 1024;

struct InvFreq {
  float v[kMaxHeadDim / 2];
};

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* __restrict__ q, float* __restrict__ k, const int32_t* __restrict__ positions, int n_heads,
                int n_kv_heads, int head_dim, const InvFreq inv_freq, unsigned int* errors) {
  extern __shared__ float cos_sin[];  // [half] cos, then [half] sin
  const int half = head_dim / 2;
  float* cos_v = cos_sin;
  float* sin_v = cos_sin + half;
  const int64_t t = blockIdx.x;
  float* qt = q + t * n_heads * head_dim;
  float* kt = k + t * n_kv_heads * head_dim;
  const int32_t pos = positions[t];
  if (pos < 0) {
    if (threadIdx.x == 0) detail::raise_index_error(errors, detail::kRopePositions);
    const float nan = __int_as_float(0x7fc00000);
    for (int i = threadIdx.x; i < n_heads * head_dim; i += kThreads) qt[i] = nan;
    for (int i = threadIdx.x; i < n_kv_heads * head_dim; i += kThreads) kt[i] = nan;
    return;
  }
  for (int j = threadIdx.x; j < half; j += kThreads) {
    const float angle = static_cast<float>(pos) * inv_freq.v[j];
    sincosf(angle, &sin_v[j], &cos_v[j]);
  }
  __syncthreads();
  const int pairs = (n_heads + n_kv_heads) * half;
  for (int e = threadIdx.x; e < pairs; e += kThreads) {
    const int head = e / half;
    const int j = e % half;
    float* v = head < n_heads ? qt + head * head_dim : kt + (head - n_heads) * head_dim;
    const float x1 = v[j];
    const float x2 = v[j + half];
    const float c = cos_v[j];
    const float s = sin_v[j];
    v[j] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    v[j + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
  }
}

}  // namespace

Status rope(const CudaContext& ctx, float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads,
            int n_kv_heads, int head_dim, float theta) {
  constexpr const char* kOp = "rope";
  HOTSWAP_RETURN_IF_ERROR(check_rope_args(kOp, q, k, positions, tokens, n_heads, n_kv_heads, head_dim, theta));
  if (head_dim > kMaxHeadDim) {
    return unimplemented(
        detail::str_cat(kOp, ": head_dim = ", head_dim, " is larger than the CUDA kernel's ", kMaxHeadDim));
  }
  if (tokens == 0) return Status::ok_status();
  // The kernel reads q and k through __restrict__ pointers. positions are device memory: the
  // kernel checks them (kRopePositions) rather than copy them here.
  if (detail::overlaps(q, tokens * n_heads * head_dim * 4, k, tokens * n_kv_heads * head_dim * 4)) {
    return detail::invalid(kOp, "q and k overlap");
  }
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, tokens, INT32_MAX, "tokens"));
  if ((int64_t{n_heads} + n_kv_heads) * head_dim > INT32_MAX) {
    return detail::invalid(kOp, "(n_heads + n_kv_heads) * head_dim overflows int");
  }

  InvFreq inv_freq{};
  const int half = head_dim / 2;
  for (int j = 0; j < half; ++j) {
    inv_freq.v[j] = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(head_dim));
  }
  constexpr int kThreads = 128;
  const size_t smem = sizeof(float) * 2 * static_cast<size_t>(half);
  rope_kernel<kThreads><<<static_cast<unsigned>(tokens), kThreads, smem, detail::stream_of(ctx)>>>(
      q, k, positions, n_heads, n_kv_heads, head_dim, inv_freq, ctx.index_errors);
  return detail::launch_status("rope kernel launch");
}

}  // namespace hotswap::kernels::cuda
