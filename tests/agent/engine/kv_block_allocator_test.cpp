#include "agent/engine/kv_block_allocator.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace hotswap::engine {
namespace {

TEST(KvBlockAllocator, HandsOutEveryBlockOnceThenNone) {
  KvBlockAllocator a(8);
  std::set<int32_t> got;
  for (int i = 0; i < 8; ++i) got.insert(a.allocate().value());
  EXPECT_EQ(got.size(), 8u);
  EXPECT_FALSE(a.allocate().has_value());
  EXPECT_EQ(a.free_count(), 0);
}

TEST(KvBlockAllocator, SharedBlockIsFreedAtTheLastRelease) {
  KvBlockAllocator a(2);
  int32_t b = a.allocate().value();
  a.retain(b);
  EXPECT_EQ(a.ref_count(b), 2);
  a.release(b);
  EXPECT_EQ(a.used_count(), 1);
  a.release(b);
  EXPECT_EQ(a.used_count(), 0);
}

TEST(KvBlockAllocator, RandomWorkloadKeepsCountsConsistent) {
  KvBlockAllocator a(64);
  std::mt19937 rng(3);
  std::vector<int32_t> held;
  for (int i = 0; i < 10000; ++i) {
    if (rng() % 2 && !held.empty()) {
      size_t k = rng() % held.size();
      a.release(held[k]);
      held.erase(held.begin() + k);
    } else if (auto b = a.allocate()) {
      held.push_back(*b);
    }
    ASSERT_EQ(a.used_count(), static_cast<int64_t>(held.size()));
  }
  for (int32_t b : held) a.release(b);
  EXPECT_EQ(a.free_count(), 64);
}

TEST(KvBlockAllocatorDeathTest, DoubleReleaseIsABrokenInvariant) {
  KvBlockAllocator a(1);
  int32_t b = a.allocate().value();
  a.release(b);
  EXPECT_DEATH(a.release(b), "release of a free block");
}

}  // namespace
}  // namespace hotswap::engine
