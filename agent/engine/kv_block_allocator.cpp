#include "agent/engine/kv_block_allocator.h"

#include <cstdio>
#include <cstdlib>

namespace hotswap::engine {

namespace {
[[noreturn]] void invariant_broken(const char* what, int32_t block) {
  std::fprintf(stderr, "KvBlockAllocator: %s (block %d)\n", what, block);
  std::abort();
}
}  // namespace

KvBlockAllocator::KvBlockAllocator(int64_t n_blocks) : ref_counts_(static_cast<size_t>(n_blocks), 0) {
  free_.reserve(static_cast<size_t>(n_blocks));
  // Lowest ids on top of the stack, so a fresh cache fills from block 0.
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<int32_t> KvBlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  int32_t b = free_.back();
  free_.pop_back();
  ref_counts_[b] = 1;
  return b;
}

void KvBlockAllocator::retain(int32_t block) {
  if (block < 0 || block >= total() || ref_counts_[block] <= 0) invariant_broken("retain of a free block", block);
  ++ref_counts_[block];
}

void KvBlockAllocator::release(int32_t block) {
  if (block < 0 || block >= total() || ref_counts_[block] <= 0) invariant_broken("release of a free block", block);
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

}  // namespace hotswap::engine
