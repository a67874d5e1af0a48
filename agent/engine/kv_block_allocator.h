// Hands out the blocks of the paged KV cache: a free list plus a reference count per block, so
// a block can later be shared between sequences (prefix sharing, copy-on-write).
//
// Threads: owned by the engine's step thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace hotswap::engine {

class KvBlockAllocator {
 public:
  explicit KvBlockAllocator(int64_t n_blocks);

  // A free block with reference count 1, or nullopt when none is free.
  std::optional<int32_t> allocate();
  // Adds a reference to an allocated block.
  void retain(int32_t block);
  // Drops a reference; the block returns to the free list at zero.
  void release(int32_t block);

  int64_t total() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t free_count() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_count() const { return total() - free_count(); }
  int32_t ref_count(int32_t block) const { return ref_counts_.at(block); }

 private:
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<int32_t> ref_counts_;
};

}  // namespace hotswap::engine
