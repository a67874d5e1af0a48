// The paged KV cache's data movement: writing new tokens' K/V into their slots, packing whole
// blocks for migration (gather), unpacking them into another pool (scatter), and re-laying a
// sequence's packed blocks for a peer with a different block size or dtype (convert).
// Traffic: kv_write touches tokens * 2 * n_kv_heads * head_dim elements; gather/scatter are
// memcpy of n * block_bytes; convert reads each source element once and writes every element of
// the destination blocks once (zeros past `tokens`).
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/row_convert.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {
namespace {

// Index arrays are host memory here, so every entry is checked before anything is written (the
// CUDA twins check them in their kernels, as they cannot read them without a copy).
Status check_block_ids(const char* op, const int32_t* block_ids, int64_t n, int64_t n_blocks) {
  for (int64_t i = 0; i < n; ++i) {
    if (block_ids[i] < 0 || block_ids[i] >= n_blocks) {
      return detail::invalid(op, "block_ids[", i, "] = ", block_ids[i], " is outside the pool [0, ", n_blocks, ")");
    }
  }
  return Status::ok_status();
}

}  // namespace

Status kv_write(const CpuContext& ctx, const KvLayout& layout, void* pool, int64_t n_blocks, int layer, const float* k,
                const float* v, const int64_t* slots, int64_t tokens) {
  constexpr const char* kOp = "kv_write";
  HOTSWAP_RETURN_IF_ERROR(check_kv_write_args(kOp, layout, pool, n_blocks, layer, k, v, slots, tokens));
  if (tokens == 0) return Status::ok_status();
  const int64_t row = int64_t{layout.n_kv_heads} * layout.head_dim;
  // slots are host memory here, so they are checked before any write (the CUDA twin checks
  // them in its kernel).
  const int64_t n_slots = n_blocks * layout.block_size;
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0 || slots[t] >= n_slots) {
      return detail::invalid(kOp, "slots[", t, "] = ", slots[t], " is outside the pool's ", n_slots, " slots (",
                             n_blocks, " blocks of ", layout.block_size, ")");
    }
  }
  // Parallel over heads, tokens in order within a head: if two tokens name the same slot the
  // later one wins, deterministically.
  parallel_for(ctx.pool, layout.n_kv_heads, [&](int64_t h_begin, int64_t h_end) {
    for (int64_t h = h_begin; h < h_end; ++h) {
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t block = slots[t] / layout.block_size;
        const int slot = static_cast<int>(slots[t] % layout.block_size);
        const int64_t src = t * row + h * layout.head_dim;
        detail::store_row_from_f32(pool, layout.dtype, layout.index(block, layer, 0, static_cast<int>(h), slot),
                                   layout.head_dim, k + src);
        detail::store_row_from_f32(pool, layout.dtype, layout.index(block, layer, 1, static_cast<int>(h), slot),
                                   layout.head_dim, v + src);
      }
    }
  });
  return Status::ok_status();
}

Status kv_gather_blocks(const CpuContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks,
                        const int32_t* block_ids, int64_t n, void* out) {
  constexpr const char* kOp = "kv_gather_blocks";
  HOTSWAP_RETURN_IF_ERROR(check_kv_gather_blocks_args(kOp, layout, pool, n_blocks, block_ids, n, out));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(check_block_ids(kOp, block_ids, n, n_blocks));
  const size_t bytes = layout.block_bytes();
  parallel_for(ctx.pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::memcpy(static_cast<char*>(out) + static_cast<size_t>(i) * bytes,
                  static_cast<const char*>(pool) + static_cast<size_t>(block_ids[i]) * bytes, bytes);
    }
  });
  return Status::ok_status();
}

Status kv_scatter_blocks(const CpuContext& ctx, const KvLayout& layout, const void* in, const int32_t* block_ids,
                         int64_t n, void* pool, int64_t n_blocks) {
  constexpr const char* kOp = "kv_scatter_blocks";
  HOTSWAP_RETURN_IF_ERROR(check_kv_scatter_blocks_args(kOp, layout, in, block_ids, n, pool, n_blocks));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(check_block_ids(kOp, block_ids, n, n_blocks));
  // Two packed blocks aimed at one block id would race between threads and lose one of them.
  std::vector<int32_t> sorted(block_ids, block_ids + n);
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) return detail::invalid(kOp, "block id ", *dup, " appears more than once in block_ids");
  const size_t bytes = layout.block_bytes();
  parallel_for(ctx.pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::memcpy(static_cast<char*>(pool) + static_cast<size_t>(block_ids[i]) * bytes,
                  static_cast<const char*>(in) + static_cast<size_t>(i) * bytes, bytes);
    }
  });
  return Status::ok_status();
}

Status kv_convert(const CpuContext& ctx, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                  void* dst, int64_t tokens) {
  HOTSWAP_RETURN_IF_ERROR(check_kv_convert_args("kv_convert", src_layout, src, dst_layout, dst, tokens));
  if (tokens == 0) return Status::ok_status();
  const int64_t dst_blocks = dst_layout.blocks_for(tokens);

  const int head_dim = dst_layout.head_dim;
  const bool same_dtype = src_layout.dtype == dst_layout.dtype;
  const size_t row_bytes = static_cast<size_t>(head_dim) * dtype_size(dst_layout.dtype);
  parallel_for(ctx.pool, dst_blocks, [&](int64_t b_begin, int64_t b_end) {
    std::vector<float> tmp(static_cast<size_t>(head_dim));
    for (int64_t b = b_begin; b < b_end; ++b) {
      for (int layer = 0; layer < dst_layout.n_layers; ++layer) {
        for (int kv = 0; kv < 2; ++kv) {
          for (int h = 0; h < dst_layout.n_kv_heads; ++h) {
            for (int s = 0; s < dst_layout.block_size; ++s) {
              const int64_t pos = b * dst_layout.block_size + s;
              const int64_t d = dst_layout.index(b, layer, kv, h, s);
              char* d_ptr = static_cast<char*>(dst) + static_cast<size_t>(d) * dtype_size(dst_layout.dtype);
              if (pos >= tokens) {
                std::memset(d_ptr, 0, row_bytes);  // all-zero bits are +0.0 in every dtype
                continue;
              }
              const int64_t sidx = src_layout.index(pos / src_layout.block_size, layer, kv, h,
                                                    static_cast<int>(pos % src_layout.block_size));
              if (same_dtype) {
                std::memcpy(d_ptr,
                            static_cast<const char*>(src) + static_cast<size_t>(sidx) * dtype_size(src_layout.dtype),
                            row_bytes);
              } else {
                detail::load_row_f32(src, src_layout.dtype, sidx, head_dim, tmp.data());
                detail::store_row_from_f32(dst, dst_layout.dtype, d, head_dim, tmp.data());
              }
            }
          }
        }
      }
    }
  });
  return Status::ok_status();
}

}  // namespace hotswap::kernels
