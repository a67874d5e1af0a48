// The memory layout of the paged KV cache, shared by the engine, the kernels and migration.
//
// The pool is an array of blocks. One block holds block_size consecutive positions of one
// sequence for every layer, K and V, so a block is one contiguous byte range: the unit that
// migration copies. Inside a block the order is [layer][K=0,V=1][kv_head][slot][head_dim], so
// attention reads one head's keys for a block as one contiguous run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace hotswap::kernels {

struct KvLayout {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;  // positions per block
  DType dtype = DType::kF32;

  int64_t block_elems() const { return int64_t{n_layers} * 2 * n_kv_heads * block_size * head_dim; }
  size_t block_bytes() const { return static_cast<size_t>(block_elems()) * dtype_size(dtype); }
  // Blocks that hold positions 0..tokens-1 of one sequence.
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size - 1) / block_size; }

  // Element index (not bytes) of (block, layer, kv, head, slot, 0) from the pool's start.
  int64_t index(int64_t block, int layer, int kv, int head, int slot) const {
    return block * block_elems() + ((((int64_t{layer} * 2 + kv) * n_kv_heads + head) * block_size + slot) * head_dim);
  }

  bool operator==(const KvLayout&) const = default;
};

}  // namespace hotswap::kernels
