// Causal attention over the paged KV cache on the GPU, for prefill and decode alike.
//
// One thread block (kThreads) per (token, query head). The block walks positions 0..pos of its
// sequence in chunks of kChunk: each warp takes positions of the chunk and computes
// scale * q . k_j (lanes stride over head_dim, a fixed shuffle tree sums them), then the block
// updates an online softmax in f32 (running max m and sum l; the accumulator is rescaled by
// exp(m_old - m_new)) and each thread adds p_j * v_j into the head_dim elements it owns.
// Finally out = acc / l. K and V are read in layout.dtype and converted to f32 on load.
// Traffic per (token, head): (pos + 1) * head_dim elements of K and of V, q once, out once;
// the query heads of one GQA group re-read the same K/V, which L2 absorbs.
//
// Every block's arithmetic depends only on its own q, its position and the cache, in a fixed
// order, so a token gives the same bits in a prefill batch or alone in decode. Bad token_seq /
// token_pos / block table entries write NaN into that token's output and raise an index error.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kMaxHeadDim = 4096;  // q and the accumulator live in shared memory: 2 * 4 * head_dim bytes

template <DType T, int kThreads, int kChunk>
__global__ void __launch_bounds__(kThreads)
    paged_attention_kernel(const detail::DeviceKvLayout layout, const void* __restrict__ pool, int64_t n_blocks,
                           int layer, const float* __restrict__ q, float* __restrict__ out, int n_heads, int group,
                           const int32_t* __restrict__ token_seq, const int32_t* __restrict__ token_pos,
                           const int32_t* __restrict__ block_tables, int64_t block_table_stride, float scale,
                           unsigned int* errors) {
  static_assert(kThreads % 32 == 0, "whole warps");
  constexpr int kWarps = kThreads / 32;
  extern __shared__ float dyn[];  // q_s[head_dim], acc[head_dim]
  __shared__ float scores[kChunk];
  __shared__ float probs[kChunk];
  __shared__ int64_t v_rows[kChunk];

  const int head_dim = layout.head_dim;
  const int bs = layout.block_size;
  const int64_t item = blockIdx.x;
  const int64_t t = item / n_heads;
  const int h = static_cast<int>(item % n_heads);
  const int kvh = h / group;
  float* o = out + item * head_dim;
  const float nan = __int_as_float(0x7fc00000);

  const int32_t seq = token_seq[t];
  const int32_t pos = token_pos[t];
  if (seq < 0 || pos < 0 || int64_t{pos / bs} + 1 > block_table_stride) {
    if (threadIdx.x == 0) detail::raise_index_error(errors, detail::kAttentionTokens);
    for (int d = threadIdx.x; d < head_dim; d += kThreads) o[d] = nan;
    return;
  }
  const int32_t* table = block_tables + int64_t{seq} * block_table_stride;
  const int64_t n_pos = int64_t{pos} + 1;
  const int64_t n_used = (n_pos + bs - 1) / bs;
  int bad = 0;
  for (int64_t b = threadIdx.x; b < n_used; b += kThreads) bad |= (table[b] < 0 || table[b] >= n_blocks);
  if (__syncthreads_or(bad)) {
    if (threadIdx.x == 0) detail::raise_index_error(errors, detail::kAttentionBlockTable);
    for (int d = threadIdx.x; d < head_dim; d += kThreads) o[d] = nan;
    return;
  }

  float* q_s = dyn;
  float* acc = dyn + head_dim;
  const float* qv = q + item * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    q_s[d] = qv[d];
    acc[d] = 0.0f;
  }
  __syncthreads();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  float m = -INFINITY;  // running max of the scores seen so far (same value in every thread)
  float l = 0.0f;       // running sum of exp(score - m)
  for (int64_t c0 = 0; c0 < n_pos; c0 += kChunk) {
    const int count = static_cast<int>(n_pos - c0 < kChunk ? n_pos - c0 : kChunk);
    for (int j = warp; j < count; j += kWarps) {
      const int64_t p = c0 + j;
      const int64_t blk = table[p / bs];
      const int slot = static_cast<int>(p % bs);
      const int64_t k_row = layout.index(blk, layer, 0, kvh, slot);
      float part = 0.0f;
      for (int d = lane; d < head_dim; d += 32) part = fmaf(q_s[d], detail::load_f32<T>(pool, k_row + d), part);
      part = detail::warp_sum(part);
      if (lane == 0) {
        scores[j] = part * scale;
        v_rows[j] = layout.index(blk, layer, 1, kvh, slot);
      }
    }
    __syncthreads();
    float chunk_max = -INFINITY;
    for (int j = 0; j < count; ++j) chunk_max = fmaxf(chunk_max, scores[j]);
    const float m_new = fmaxf(m, chunk_max);
    const float alpha = expf(m - m_new);  // 0 on the first chunk (m = -inf)
    for (int j = threadIdx.x; j < count; j += kThreads) probs[j] = expf(scores[j] - m_new);
    __syncthreads();
    float chunk_sum = 0.0f;
    for (int j = 0; j < count; ++j) chunk_sum += probs[j];
    l = l * alpha + chunk_sum;
    for (int d = threadIdx.x; d < head_dim; d += kThreads) {
      float a = acc[d] * alpha;
      for (int j = 0; j < count; ++j) a = fmaf(probs[j], detail::load_f32<T>(pool, v_rows[j] + d), a);
      acc[d] = a;
    }
    m = m_new;
    __syncthreads();  // scores, probs and v_rows are rewritten by the next chunk
  }
  for (int d = threadIdx.x; d < head_dim; d += kThreads) o[d] = acc[d] / l;
}

}  // namespace

Status paged_attention(const CudaContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                       const float* q, float* out, int64_t tokens, int n_heads, const int32_t* token_seq,
                       const int32_t* token_pos, const int32_t* block_tables, int64_t block_table_stride, float scale) {
  constexpr const char* kOp = "paged_attention";
  HOTSWAP_RETURN_IF_ERROR(check_paged_attention_args(kOp, layout, pool, n_blocks, layer, q, out, tokens, n_heads,
                                                     token_seq, token_pos, block_tables, block_table_stride));
  if (layout.head_dim > kMaxHeadDim) {
    return unimplemented(
        detail::str_cat(kOp, ": head_dim = ", layout.head_dim, " is larger than the CUDA kernel's ", kMaxHeadDim));
  }
  if (tokens == 0) return Status::ok_status();
  // token_seq, token_pos and block_tables are device memory: the kernel checks them
  // (kAttentionTokens, kAttentionBlockTable) rather than copy them here.
  const int head_dim = layout.head_dim;
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, tokens * n_heads, INT32_MAX, "tokens * n_heads"));

  constexpr int kThreads = 128;
  constexpr int kChunk = 64;
  const size_t smem = sizeof(float) * 2 * static_cast<size_t>(head_dim);
  const auto dl = detail::DeviceKvLayout::from(layout);
  const int group = n_heads / layout.n_kv_heads;
  return detail::with_dtype(layout.dtype, [&](auto tag) {
    paged_attention_kernel<decltype(tag)::value, kThreads, kChunk>
        <<<static_cast<unsigned>(tokens * n_heads), kThreads, smem, detail::stream_of(ctx)>>>(
            dl, pool, n_blocks, layer, q, out, n_heads, group, token_seq, token_pos, block_tables, block_table_stride,
            scale, ctx.index_errors);
    return detail::launch_status("paged_attention kernel launch");
  });
}

}  // namespace hotswap::kernels::cuda
