// The engine's compute, as plain functions over raw buffers: the CPU implementations.
//
// Each op here has a CUDA twin in kernels/cuda/ with the same parameter list, except that the
// CpuContext becomes a CudaContext (stream, cuBLAS handle) and pointers are device pointers.
// Every op checks its shapes and returns an error Status instead of crashing; a test in
// tests/kernels/ compares each with a naive reference.
//
// Conventions:
//   - Activations are f32, row-major. Weights are read in their stored dtype (F32/F16/BF16) and
//     accumulated in f32.
//   - A linear layer's weight is [out, in] row-major, as PyTorch stores nn.Linear.
//   - Determinism: each output element is computed by one thread with a fixed reduction order
//     that does not depend on the number of rows in the batch, so the same token gives the same
//     bits whether it is alone or batched (batch invariance), prefilled or decoded.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace hotswap::kernels {

class ThreadPool;

struct CpuContext {
  ThreadPool* pool = nullptr;  // null: run on the calling thread
};

// out[i, :] = table[ids[i], :] as f32. table: [vocab, dim] of dtype t.
// Error if any id is outside [0, vocab).
Status embedding(const CpuContext& ctx, const void* table, DType t, int64_t vocab, int64_t dim,
                 const int32_t* ids, int64_t n, float* out);

// Hugging Face LlamaRMSNorm in fp32: y = w * (x * rsqrt(mean(x^2) + eps)). x, y: [rows, dim]
// (y may alias x); w: [dim] of dtype wt.
Status rms_norm(const CpuContext& ctx, const float* x, const void* w, DType wt, float* y, int64_t rows,
                int64_t dim, float eps);

// y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o]). x: [rows, in]; w: [out, in] of dtype wt;
// bias: [out] of dtype wt, or null; y: [rows, out] (must not alias x).
Status matmul(const CpuContext& ctx, const float* x, int64_t rows, int64_t in, const void* w, DType wt,
              int64_t out, const void* bias, float* y);

// In place: y[i] += x[i].
Status add(const CpuContext& ctx, float* y, const float* x, int64_t n);

// Rotate-half RoPE (Hugging Face rotate_half), in place. q: [tokens, n_heads, head_dim];
// k: [tokens, n_kv_heads, head_dim]; positions: [tokens]. inv_freq[j] = 1 / theta^(2j/head_dim)
// and angle = float(pos) * inv_freq[j], both in f32, as transformers computes them.
Status rope(const CpuContext& ctx, float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads,
            int n_kv_heads, int head_dim, float theta);

// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)). out may alias gate or up.
Status swiglu(const CpuContext& ctx, const float* gate, const float* up, float* out, int64_t n);

// Writes each token's K and V (f32, [tokens, n_kv_heads, head_dim]) into the cache slot
// slots[t] = block * block_size + offset, converting to layout.dtype. Error on a slot outside the
// pool (n_blocks blocks).
Status kv_write(const CpuContext& ctx, const KvLayout& layout, void* pool, int64_t n_blocks, int layer,
                const float* k, const float* v, const int64_t* slots, int64_t tokens);

// Causal attention over the paged cache, for prefill and decode alike. Token t belongs to
// sequence token_seq[t] and sits at position token_pos[t]; it attends to positions
// 0..token_pos[t] of that sequence, whose KV for position j is in block
// block_tables[token_seq[t] * block_table_stride + j / block_size] at offset j % block_size.
// (Its own K/V must already be written with kv_write.) Query head h reads KV head
// h / (n_heads / n_kv_heads) (GQA). Softmax in f32, max-subtracted.
// q, out: [tokens, n_heads, head_dim]; out must not alias q.
Status paged_attention(const CpuContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks,
                       int layer, const float* q, float* out, int64_t tokens, int n_heads,
                       const int32_t* token_seq, const int32_t* token_pos, const int32_t* block_tables,
                       int64_t block_table_stride, float scale);

// Row-wise softmax in f32 (max-subtracted): probs[r, :] = softmax(logits[r, :]). May alias.
Status softmax(const CpuContext& ctx, const float* logits, float* probs, int64_t rows, int64_t vocab);

// out[r] = index of the largest logits[r, :]; ties go to the lowest index (as torch.argmax).
Status argmax(const CpuContext& ctx, const float* logits, int64_t rows, int64_t vocab, int32_t* out);

// Migration's unit of transfer. Packs whole blocks block_ids[0..n) of pool (n_blocks blocks)
// into out, back to back, each layout.block_bytes() long, in that order.
Status kv_gather_blocks(const CpuContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks,
                        const int32_t* block_ids, int64_t n, void* out);

// The inverse: writes packed blocks from in into pool at block_ids[0..n).
Status kv_scatter_blocks(const CpuContext& ctx, const KvLayout& layout, const void* in, const int32_t* block_ids,
                         int64_t n, void* pool, int64_t n_blocks);

// Converts one sequence's packed blocks between layouts (dtype and/or block size may differ;
// layers, heads and head_dim must match). src holds ceil(tokens / src.block_size) packed blocks
// covering positions 0..tokens-1; dst receives ceil(tokens / dst.block_size) packed blocks.
// Slots past `tokens` in dst's last block are zeroed.
Status kv_convert(const CpuContext& ctx, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                  void* dst, int64_t tokens);

}  // namespace hotswap::kernels
