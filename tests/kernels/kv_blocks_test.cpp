// kv_write, kv_gather_blocks, kv_scatter_blocks and kv_convert.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

KvLayout make_layout(int block_size, DType t) {
  return KvLayout{.n_layers = 3, .n_kv_heads = 2, .head_dim = 12, .block_size = block_size, .dtype = t};
}

// Value of (pos, layer, kv, head, d) in a sequence's packed blocks.
float packed_value(const KvLayout& l, const std::vector<uint8_t>& packed, int64_t pos, int layer, int kv, int h,
                   int d) {
  const int64_t idx = l.index(pos / l.block_size, layer, kv, h, static_cast<int>(pos % l.block_size)) + d;
  return load_as_f32(packed.data(), l.dtype, static_cast<size_t>(idx));
}

// A sequence of `tokens` positions written into packed blocks 0..n-1 of a pool, for every layer.
std::vector<uint8_t> packed_sequence(const KvLayout& l, int64_t tokens, uint32_t seed) {
  const int64_t n = (tokens + l.block_size - 1) / l.block_size;
  std::vector<uint8_t> pool(static_cast<size_t>(n) * l.block_bytes(), 0);
  const size_t row = static_cast<size_t>(l.n_kv_heads) * l.head_dim;
  std::vector<int64_t> slots(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) slots[static_cast<size_t>(t)] = t;
  for (int layer = 0; layer < l.n_layers; ++layer) {
    // bf16-representable values, so f32 -> bf16 -> f32 must be lossless.
    const auto k = testing::store_as(testing::random_floats(tokens * row, seed + layer * 2), DType::kBF16).values;
    const auto v = testing::store_as(testing::random_floats(tokens * row, seed + layer * 2 + 1), DType::kBF16).values;
    EXPECT_TRUE(kv_write(CpuContext{}, l, pool.data(), n, layer, k.data(), v.data(), slots.data(), tokens).ok());
  }
  return pool;
}

TEST(KvWriteTest, KvWriteStoresEachTokenAtItsSlotInLayoutOrder) {
  ThreadPool pool2(2);
  for (DType t : testing::kAllDTypes) {
    const KvLayout l = make_layout(4, t);
    const int64_t n_blocks = 5;
    std::vector<uint8_t> pool(n_blocks * l.block_bytes(), 0);
    const std::vector<int64_t> slots = {13, 0, 7, 19};
    const size_t row = static_cast<size_t>(l.n_kv_heads) * l.head_dim;
    const auto k = testing::random_floats(slots.size() * row, 1);
    const auto v = testing::random_floats(slots.size() * row, 2);
    ASSERT_TRUE(kv_write(CpuContext{&pool2}, l, pool.data(), n_blocks, 2, k.data(), v.data(), slots.data(), 4).ok());
    std::vector<bool> touched(static_cast<size_t>(n_blocks * l.block_elems()), false);
    for (size_t i = 0; i < slots.size(); ++i) {
      for (int h = 0; h < l.n_kv_heads; ++h) {
        for (int d = 0; d < l.head_dim; ++d) {
          const size_t src = i * row + static_cast<size_t>(h) * l.head_dim + d;
          const int64_t kidx = l.index(slots[i] / 4, 2, 0, h, static_cast<int>(slots[i] % 4)) + d;
          const int64_t vidx = l.index(slots[i] / 4, 2, 1, h, static_cast<int>(slots[i] % 4)) + d;
          float expect_k = 0, expect_v = 0;
          uint8_t scratch[4];
          store_from_f32(scratch, t, 0, k[src]);
          expect_k = load_as_f32(scratch, t, 0);
          store_from_f32(scratch, t, 0, v[src]);
          expect_v = load_as_f32(scratch, t, 0);
          ASSERT_EQ(load_as_f32(pool.data(), t, kidx), expect_k);
          ASSERT_EQ(load_as_f32(pool.data(), t, vidx), expect_v);
          touched[static_cast<size_t>(kidx)] = touched[static_cast<size_t>(vidx)] = true;
        }
      }
    }
    for (size_t e = 0; e < touched.size(); ++e) {
      if (!touched[e]) {
        ASSERT_EQ(load_as_f32(pool.data(), t, e), 0.0f) << "element " << e << " was overwritten";
      }
    }
  }
}

TEST(KvWriteTest, KvWriteRejectsBadArguments) {
  const KvLayout l = make_layout(4, DType::kF16);
  std::vector<uint8_t> pool(2 * l.block_bytes());
  std::vector<float> k(24), v(24);
  const int64_t ok_slot = 7, bad_slot = 8, neg_slot = -1;
  const CpuContext ctx;
  EXPECT_TRUE(kv_write(ctx, l, pool.data(), 2, 0, k.data(), v.data(), &ok_slot, 1).ok());
  const Status st = kv_write(ctx, l, pool.data(), 2, 0, k.data(), v.data(), &bad_slot, 1);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("slots[0] = 8"), std::string::npos) << st.message();
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 0, k.data(), v.data(), &neg_slot, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 3, k.data(), v.data(), &ok_slot, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, nullptr, 2, 0, k.data(), v.data(), &ok_slot, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 0, nullptr, v.data(), &ok_slot, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 0, k.data(), nullptr, &ok_slot, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 0, k.data(), v.data(), nullptr, 1).ok());
  EXPECT_FALSE(kv_write(ctx, l, pool.data(), 2, 0, k.data(), v.data(), &ok_slot, -1).ok());
  KvLayout broken = l;
  broken.block_size = 0;
  EXPECT_FALSE(kv_write(ctx, broken, pool.data(), 2, 0, k.data(), v.data(), &ok_slot, 1).ok());
}

TEST(KvBlocksTest, GatherThenScatterRoundTripsIntoOtherBlockIds) {
  ThreadPool pool2(2);
  for (DType t : testing::kAllDTypes) {
    const KvLayout l = make_layout(4, t);
    const int64_t n_blocks = 8;
    const auto src = packed_sequence(l, n_blocks * 4, 11);  // every block filled
    const std::vector<int32_t> from = {5, 2, 7};
    const std::vector<int32_t> to = {0, 6, 3};
    std::vector<uint8_t> packed(from.size() * l.block_bytes());
    ASSERT_TRUE(kv_gather_blocks(CpuContext{&pool2}, l, src.data(), n_blocks, from.data(), 3, packed.data()).ok());
    std::vector<uint8_t> dst(n_blocks * l.block_bytes(), 0);
    ASSERT_TRUE(kv_scatter_blocks(CpuContext{&pool2}, l, packed.data(), to.data(), 3, dst.data(), n_blocks).ok());
    const size_t bb = l.block_bytes();
    for (size_t i = 0; i < from.size(); ++i) {
      EXPECT_EQ(std::memcmp(packed.data() + i * bb, src.data() + from[i] * bb, bb), 0);
      EXPECT_EQ(std::memcmp(dst.data() + to[i] * bb, src.data() + from[i] * bb, bb), 0);
    }
    const std::vector<uint8_t> zeros(bb, 0);
    for (int32_t b : {1, 2, 4, 5, 7}) EXPECT_EQ(std::memcmp(dst.data() + b * bb, zeros.data(), bb), 0) << b;
  }
}

TEST(KvBlocksTest, GatherAndScatterRejectBadBlockIds) {
  const KvLayout l = make_layout(4, DType::kF32);
  std::vector<uint8_t> pool(3 * l.block_bytes()), packed(2 * l.block_bytes());
  const int32_t good[2] = {0, 2};
  const int32_t bad[2] = {0, 3};
  const int32_t dup[2] = {1, 1};
  const CpuContext ctx;
  EXPECT_TRUE(kv_gather_blocks(ctx, l, pool.data(), 3, good, 2, packed.data()).ok());
  EXPECT_FALSE(kv_gather_blocks(ctx, l, pool.data(), 3, bad, 2, packed.data()).ok());
  EXPECT_FALSE(kv_gather_blocks(ctx, l, nullptr, 3, good, 2, packed.data()).ok());
  EXPECT_FALSE(kv_gather_blocks(ctx, l, pool.data(), 3, nullptr, 2, packed.data()).ok());
  EXPECT_FALSE(kv_gather_blocks(ctx, l, pool.data(), 3, good, 2, nullptr).ok());
  EXPECT_FALSE(kv_gather_blocks(ctx, l, pool.data(), 3, good, -1, packed.data()).ok());
  EXPECT_TRUE(kv_scatter_blocks(ctx, l, packed.data(), good, 2, pool.data(), 3).ok());
  const Status st = kv_scatter_blocks(ctx, l, packed.data(), bad, 2, pool.data(), 3);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("block_ids[1] = 3"), std::string::npos) << st.message();
  EXPECT_FALSE(kv_scatter_blocks(ctx, l, packed.data(), dup, 2, pool.data(), 3).ok());
  EXPECT_FALSE(kv_scatter_blocks(ctx, l, nullptr, good, 2, pool.data(), 3).ok());
  EXPECT_FALSE(kv_scatter_blocks(ctx, l, packed.data(), good, 2, nullptr, 3).ok());
}

TEST(KvConvertTest, KvConvertF32ToBf16AndBackPreservesValues) {
  const int64_t tokens = 45;
  const KvLayout f32 = make_layout(16, DType::kF32);
  const KvLayout bf16 = make_layout(16, DType::kBF16);
  const auto src = packed_sequence(f32, tokens, 21);
  std::vector<uint8_t> mid(3 * bf16.block_bytes(), 0xff), back(src.size(), 0xff);
  ASSERT_TRUE(kv_convert(CpuContext{}, f32, src.data(), bf16, mid.data(), tokens).ok());
  ASSERT_TRUE(kv_convert(CpuContext{}, bf16, mid.data(), f32, back.data(), tokens).ok());
  EXPECT_EQ(src, back);  // includes the zeroed slots 45..47
}

TEST(KvConvertTest, KvConvertAcrossBlockSizesPreservesValuesAndZeroesTheTail) {
  ThreadPool pool2(2);
  const int64_t tokens = 45;
  const KvLayout a = make_layout(16, DType::kF32);
  const KvLayout b = make_layout(32, DType::kBF16);
  const KvLayout c = make_layout(8, DType::kF16);
  const auto src = packed_sequence(a, tokens, 31);
  std::vector<uint8_t> mid(2 * b.block_bytes(), 0xff);   // 45 tokens: 2 blocks of 32
  std::vector<uint8_t> last(6 * c.block_bytes(), 0xff);  // 6 blocks of 8
  ASSERT_TRUE(kv_convert(CpuContext{&pool2}, a, src.data(), b, mid.data(), tokens).ok());
  ASSERT_TRUE(kv_convert(CpuContext{&pool2}, b, mid.data(), c, last.data(), tokens).ok());
  for (int layer = 0; layer < a.n_layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int h = 0; h < a.n_kv_heads; ++h) {
        for (int d = 0; d < a.head_dim; ++d) {
          for (int64_t pos = 0; pos < tokens; ++pos) {
            const float v = packed_value(a, src, pos, layer, kv, h, d);
            ASSERT_EQ(packed_value(b, mid, pos, layer, kv, h, d), v);
            ASSERT_EQ(packed_value(c, last, pos, layer, kv, h, d), f16_to_f32(f32_to_f16(v)));
          }
          for (int64_t pos = tokens; pos < 64; ++pos) ASSERT_EQ(packed_value(b, mid, pos, layer, kv, h, d), 0.0f);
          for (int64_t pos = tokens; pos < 48; ++pos) ASSERT_EQ(packed_value(c, last, pos, layer, kv, h, d), 0.0f);
        }
      }
    }
  }
  // Converting back to the original layout via 16 -> 32 -> 8 -> 16 keeps the bf16-exact values
  // wherever f16 could hold them; same layout is a plain copy.
  std::vector<uint8_t> same(src.size());
  ASSERT_TRUE(kv_convert(CpuContext{}, a, src.data(), a, same.data(), tokens).ok());
  EXPECT_EQ(same, src);
}

TEST(KvConvertTest, KvConvertRejectsMismatchedLayouts) {
  const KvLayout a = make_layout(16, DType::kF32);
  std::vector<uint8_t> src(a.block_bytes()), dst(4 * a.block_bytes());
  const CpuContext ctx;
  KvLayout other = a;
  other.n_layers = 2;
  const Status st = kv_convert(ctx, a, src.data(), other, dst.data(), 10);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("n_layers"), std::string::npos) << st.message();
  other = a;
  other.head_dim = 8;
  EXPECT_FALSE(kv_convert(ctx, a, src.data(), other, dst.data(), 10).ok());
  other = a;
  other.n_kv_heads = 1;
  EXPECT_FALSE(kv_convert(ctx, a, src.data(), other, dst.data(), 10).ok());
  other = a;
  other.block_size = 0;
  EXPECT_FALSE(kv_convert(ctx, a, src.data(), other, dst.data(), 10).ok());
  EXPECT_FALSE(kv_convert(ctx, a, nullptr, a, dst.data(), 10).ok());
  EXPECT_FALSE(kv_convert(ctx, a, src.data(), a, nullptr, 10).ok());
  EXPECT_FALSE(kv_convert(ctx, a, src.data(), a, dst.data(), -1).ok());
  EXPECT_TRUE(kv_convert(ctx, a, nullptr, a, nullptr, 0).ok());
}

}  // namespace
}  // namespace hotswap::kernels
