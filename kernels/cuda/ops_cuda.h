// The engine's compute on an NVIDIA GPU: the CUDA twins of kernels/ops.h.
//
// Each op has the same parameter list and meaning as its CPU twin (read ops.h for the shapes),
// except that the CpuContext becomes a CudaContext and every pointer is a device pointer.
// Ops are asynchronous: they enqueue work on ctx.stream and return; an ok Status means the
// arguments were valid and the launch succeeded. Errors from execution surface at the next
// synchronisation (take_index_errors, synchronize, or any CUDA call that reports them).
//
// What is checked where:
//   - The launch wrapper checks everything the host can see without touching device memory:
//     sizes, dtypes, layouts, null pointers, forbidden aliasing. A bad one returns
//     invalid_argument naming the op and the parameter, with the CPU twin's words (both call
//     the same check in kernels/op_checks.h).
//   - Values inside device arrays (ids, positions, slots, token_seq/token_pos, block tables,
//     block ids) cannot be read by the host without a copy and a stream sync on every call, so
//     the kernels check them: a bad entry never causes an out-of-bounds access; its f32 output
//     is written as NaN (embedding rows, rope rows, attention outputs) or its write is skipped
//     (kv_write, kv_gather_blocks, kv_scatter_blocks), and the op's bit is set in
//     *ctx.index_errors. take_index_errors() turns those bits into an invalid_argument.
//
// Determinism: every output element is computed by a fixed sequence of f32 operations that
// depends only on the shapes of its own row, never on the number of rows, tokens or sequences
// in the call, so a token gives the same bits alone or batched, prefilled or decoded (batch
// invariance, as on the CPU). The GPU's bits differ from the CPU's in the last places.
//
// Threads: a CudaContext may be used by one host thread at a time; ops on one context run in
// stream order.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace hotswap::kernels::cuda {

struct CudaContext {
  void* stream = nullptr;  // cudaStream_t; null is the legacy default stream
  // cublasHandle_t bound to `stream`, or null. No op needs it: matmul is a hand-written kernel
  // because cuBLAS picks its algorithm (and so its summation order) by batch size, which would
  // break batch invariance (see matmul.cu). An engine may keep its handle here with its stream.
  void* cublas = nullptr;
  // Device pointer to one zeroed unsigned int that kernels OR IndexError bits into when a value
  // in a device index array is out of range; null: bad indices are still made harmless (see
  // above) but not reported.
  unsigned int* index_errors = nullptr;
};

// Creates a context on `device`: a new non-blocking stream and a zeroed index-error word
// (cublas stays null). unavailable when there is no such device.
StatusOr<CudaContext> create_context(int device = 0);

// Waits for the stream, then frees what create_context made and nulls the members. Returns the
// first error met (a pending execution error included); frees everything regardless.
Status destroy_context(CudaContext& ctx);

// Waits for everything enqueued on ctx.stream; returns the execution error if one happened.
Status synchronize(const CudaContext& ctx);

// Waits for ctx.stream, then reads and clears *ctx.index_errors: ok when no kernel found a bad
// index since the last call, otherwise invalid_argument naming each op and array
// ("device-side index check failed: embedding: ids[i] outside [0, vocab); ..."). ok (after the
// wait) when ctx.index_errors is null.
Status take_index_errors(const CudaContext& ctx);

Status embedding(const CudaContext& ctx, const void* table, DType t, int64_t vocab, int64_t dim, const int32_t* ids,
                 int64_t n, float* out);

Status rms_norm(const CudaContext& ctx, const float* x, const void* w, DType wt, float* y, int64_t rows, int64_t dim,
                float eps);

Status matmul(const CudaContext& ctx, const float* x, int64_t rows, int64_t in, const void* w, DType wt, int64_t out,
              const void* bias, float* y);

Status add(const CudaContext& ctx, float* y, const float* x, int64_t n);

// head_dim up to 1024 (larger: unimplemented).
Status rope(const CudaContext& ctx, float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads,
            int n_kv_heads, int head_dim, float theta);

Status swiglu(const CudaContext& ctx, const float* gate, const float* up, float* out, int64_t n);

// Slots should be distinct: if two tokens name one slot, which one lands is unspecified (the
// CPU twin keeps the later one).
Status kv_write(const CudaContext& ctx, const KvLayout& layout, void* pool, int64_t n_blocks, int layer, const float* k,
                const float* v, const int64_t* slots, int64_t tokens);

Status paged_attention(const CudaContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                       const float* q, float* out, int64_t tokens, int n_heads, const int32_t* token_seq,
                       const int32_t* token_pos, const int32_t* block_tables, int64_t block_table_stride, float scale);

Status softmax(const CudaContext& ctx, const float* logits, float* probs, int64_t rows, int64_t vocab);

Status argmax(const CudaContext& ctx, const float* logits, int64_t rows, int64_t vocab, int32_t* out);

Status kv_gather_blocks(const CudaContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks,
                        const int32_t* block_ids, int64_t n, void* out);

// A block id that appears more than once: the last occurrence is written, the others skipped,
// and the error is reported through ctx.index_errors (the CPU twin rejects the call).
Status kv_scatter_blocks(const CudaContext& ctx, const KvLayout& layout, const void* in, const int32_t* block_ids,
                         int64_t n, void* pool, int64_t n_blocks);

Status kv_convert(const CudaContext& ctx, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                  void* dst, int64_t tokens);

}  // namespace hotswap::kernels::cuda
