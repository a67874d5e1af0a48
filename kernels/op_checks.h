// The host-side argument checks of each op, shared by the CPU kernels (kernels/ops.h) and their
// CUDA twins (kernels/cuda/ops_cuda.h), so both backends reject the same calls with the same
// words. One function per op, taking the op's name and the parameters it checks in the op's
// order (no context); it checks sizes, dtypes, layouts, null pointers and the aliasing both
// backends forbid. An empty batch is ok without looking at the pointers it would not touch.
//
// What stays in a backend, checked after this: the CPU kernels read the index arrays (ids,
// positions, slots, block ids, token_seq/token_pos, block tables) on the host and reject a bad
// entry up front; the CUDA twins cannot read device memory without a copy and a sync, so their
// kernels check those entries and report through ctx.index_errors. The CUDA wrappers also check
// launch limits (grid sizes, head_dim) and some aliasing their kernels cannot tolerate that the
// CPU kernels do not check (rms_norm/softmax partial overlap, rope q/k, kv block copies).
//
// Standard library only: compiled into hotswap_kernels, which hotswap_kernels_cuda links.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace hotswap::kernels {

Status check_embedding_args(const char* op, const void* table, DType t, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t n, const float* out);

Status check_rms_norm_args(const char* op, const float* x, const void* w, DType wt, const float* y, int64_t rows,
                           int64_t dim, float eps);

// Also rejects y overlapping x.
Status check_matmul_args(const char* op, const float* x, int64_t rows, int64_t in, const void* w, DType wt, int64_t out,
                         const float* y);

Status check_add_args(const char* op, const float* y, const float* x, int64_t n);

Status check_rope_args(const char* op, const float* q, const float* k, const int32_t* positions, int64_t tokens,
                       int n_heads, int n_kv_heads, int head_dim, float theta);

Status check_swiglu_args(const char* op, const float* gate, const float* up, const float* out, int64_t n);

Status check_kv_write_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                           const float* k, const float* v, const int64_t* slots, int64_t tokens);

// Also rejects out overlapping q.
Status check_paged_attention_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                                  const float* q, const float* out, int64_t tokens, int n_heads,
                                  const int32_t* token_seq, const int32_t* token_pos, const int32_t* block_tables,
                                  int64_t block_table_stride);

Status check_softmax_args(const char* op, const float* logits, const float* probs, int64_t rows, int64_t vocab);

Status check_argmax_args(const char* op, const float* logits, int64_t rows, int64_t vocab, const int32_t* out);

Status check_kv_gather_blocks_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks,
                                   const int32_t* block_ids, int64_t n, const void* out);

Status check_kv_scatter_blocks_args(const char* op, const KvLayout& layout, const void* in, const int32_t* block_ids,
                                    int64_t n, const void* pool, int64_t n_blocks);

Status check_kv_convert_args(const char* op, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                             const void* dst, int64_t tokens);

}  // namespace hotswap::kernels
