// The per-op argument checks shared by the CPU and CUDA backends (see op_checks.h). The order
// of the checks decides which error a call with several bad arguments reports: scalars first,
// then the empty-batch shortcut, then pointers, then aliasing.
#include "kernels/op_checks.h"

#include "kernels/check.h"

namespace hotswap::kernels {
namespace {

constexpr int64_t kFloatBytes = sizeof(float);

// kv_gather_blocks and kv_scatter_blocks move n whole blocks between a pool and a packed buffer.
Status check_block_copy_sizes(const char* op, const KvLayout& layout, int64_t n_blocks, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_layout(op, layout, "layout"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n_blocks, "n_blocks"));
  return detail::check_non_negative(op, n, "n");
}

Status check_layer(const char* op, int layer, const KvLayout& layout) {
  if (layer < 0 || layer >= layout.n_layers) {
    return detail::invalid(op, "layer = ", layer, " is outside [0, ", layout.n_layers, ")");
  }
  return Status::ok_status();
}

}  // namespace

Status check_embedding_args(const char* op, const void* table, DType t, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t n, const float* out) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_dtype(op, t, "table"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, vocab, "vocab"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, dim, "dim"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n, "n"));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, table, "table", vocab * dim));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, ids, "ids", n));
  return detail::check_ptr(op, out, "out", n * dim);
}

Status check_rms_norm_args(const char* op, const float* x, const void* w, DType wt, const float* y, int64_t rows,
                           int64_t dim, float eps) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_dtype(op, wt, "w"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, dim, "dim"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, rows, "rows"));
  if (!(eps >= 0.0f)) return detail::invalid(op, "eps must be >= 0, got ", eps);
  if (rows == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, x, "x", rows * dim));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, w, "w", dim));
  return detail::check_ptr(op, y, "y", rows * dim);
}

Status check_matmul_args(const char* op, const float* x, int64_t rows, int64_t in, const void* w, DType wt, int64_t out,
                         const float* y) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_dtype(op, wt, "w"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, rows, "rows"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, in, "in"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, out, "out"));
  if (rows == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, x, "x", rows * in));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, w, "w", out * in));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, y, "y", rows * out));
  if (detail::overlaps(x, rows * in * kFloatBytes, y, rows * out * kFloatBytes)) {
    return detail::invalid(op, "y overlaps x (rows=", rows, ", in=", in, ", out=", out, ")");
  }
  return Status::ok_status();
}

Status check_add_args(const char* op, const float* y, const float* x, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n, "n"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, y, "y", n));
  return detail::check_ptr(op, x, "x", n);
}

Status check_rope_args(const char* op, const float* q, const float* k, const int32_t* positions, int64_t tokens,
                       int n_heads, int n_kv_heads, int head_dim, float theta) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, tokens, "tokens"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, n_heads, "n_heads"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, n_kv_heads, "n_kv_heads"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, head_dim, "head_dim"));
  if (head_dim % 2 != 0) return detail::invalid(op, "head_dim must be even, got ", head_dim);
  if (!(theta > 0.0f)) return detail::invalid(op, "theta must be > 0, got ", theta);
  if (tokens == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, q, "q", tokens * n_heads * head_dim));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, k, "k", tokens * n_kv_heads * head_dim));
  return detail::check_ptr(op, positions, "positions", tokens);
}

Status check_swiglu_args(const char* op, const float* gate, const float* up, const float* out, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n, "n"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, gate, "gate", n));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, up, "up", n));
  return detail::check_ptr(op, out, "out", n);
}

Status check_kv_write_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                           const float* k, const float* v, const int64_t* slots, int64_t tokens) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_layout(op, layout, "layout"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n_blocks, "n_blocks"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, tokens, "tokens"));
  HOTSWAP_RETURN_IF_ERROR(check_layer(op, layer, layout));
  if (tokens == 0) return Status::ok_status();
  const int64_t row = int64_t{layout.n_kv_heads} * layout.head_dim;
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, pool, "pool", n_blocks * layout.block_elems()));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, k, "k", tokens * row));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, v, "v", tokens * row));
  return detail::check_ptr(op, slots, "slots", tokens);
}

Status check_paged_attention_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                                  const float* q, const float* out, int64_t tokens, int n_heads,
                                  const int32_t* token_seq, const int32_t* token_pos, const int32_t* block_tables,
                                  int64_t block_table_stride) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_layout(op, layout, "layout"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, n_blocks, "n_blocks"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, tokens, "tokens"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, n_heads, "n_heads"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, block_table_stride, "block_table_stride"));
  HOTSWAP_RETURN_IF_ERROR(check_layer(op, layer, layout));
  if (n_heads % layout.n_kv_heads != 0) {
    return detail::invalid(op, "n_heads = ", n_heads, " is not a multiple of n_kv_heads = ", layout.n_kv_heads);
  }
  if (tokens == 0) return Status::ok_status();
  const int64_t q_elems = tokens * n_heads * layout.head_dim;
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, pool, "pool", n_blocks * layout.block_elems()));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, q, "q", q_elems));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, out, "out", q_elems));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, token_seq, "token_seq", tokens));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, token_pos, "token_pos", tokens));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, block_tables, "block_tables", block_table_stride));
  if (detail::overlaps(out, q_elems * kFloatBytes, q, q_elems * kFloatBytes))
    return detail::invalid(op, "out overlaps q");
  return Status::ok_status();
}

Status check_softmax_args(const char* op, const float* logits, const float* probs, int64_t rows, int64_t vocab) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, vocab, "vocab"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, rows, "rows"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, logits, "logits", rows * vocab));
  return detail::check_ptr(op, probs, "probs", rows * vocab);
}

Status check_argmax_args(const char* op, const float* logits, int64_t rows, int64_t vocab, const int32_t* out) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_positive(op, vocab, "vocab"));
  if (vocab > INT32_MAX) return detail::invalid(op, "vocab = ", vocab, " does not fit the int32 output");
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, rows, "rows"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, logits, "logits", rows * vocab));
  return detail::check_ptr(op, out, "out", rows);
}

Status check_kv_gather_blocks_args(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks,
                                   const int32_t* block_ids, int64_t n, const void* out) {
  HOTSWAP_RETURN_IF_ERROR(check_block_copy_sizes(op, layout, n_blocks, n));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, pool, "pool", n_blocks * layout.block_elems()));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, block_ids, "block_ids", n));
  return detail::check_ptr(op, out, "out", n * layout.block_elems());
}

Status check_kv_scatter_blocks_args(const char* op, const KvLayout& layout, const void* in, const int32_t* block_ids,
                                    int64_t n, const void* pool, int64_t n_blocks) {
  HOTSWAP_RETURN_IF_ERROR(check_block_copy_sizes(op, layout, n_blocks, n));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, in, "in", n * layout.block_elems()));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, block_ids, "block_ids", n));
  return detail::check_ptr(op, pool, "pool", n_blocks * layout.block_elems());
}

Status check_kv_convert_args(const char* op, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                             const void* dst, int64_t tokens) {
  HOTSWAP_RETURN_IF_ERROR(detail::check_layout(op, src_layout, "src_layout"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_layout(op, dst_layout, "dst_layout"));
  if (src_layout.n_layers != dst_layout.n_layers || src_layout.n_kv_heads != dst_layout.n_kv_heads ||
      src_layout.head_dim != dst_layout.head_dim) {
    return detail::invalid(op, "layouts disagree on the model: src (n_layers=", src_layout.n_layers,
                           ", n_kv_heads=", src_layout.n_kv_heads, ", head_dim=", src_layout.head_dim,
                           ") vs dst (n_layers=", dst_layout.n_layers, ", n_kv_heads=", dst_layout.n_kv_heads,
                           ", head_dim=", dst_layout.head_dim, ")");
  }
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(op, tokens, "tokens"));
  if (tokens == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(op, src, "src", src_layout.blocks_for(tokens) * src_layout.block_elems()));
  return detail::check_ptr(op, dst, "dst", dst_layout.blocks_for(tokens) * dst_layout.block_elems());
}

}  // namespace hotswap::kernels
