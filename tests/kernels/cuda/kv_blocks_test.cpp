// kv_gather_blocks, kv_scatter_blocks and kv_convert (CUDA) against naive byte and element
// loops: gather/scatter are exact block copies, convert re-lays positions and rounds dtypes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

KvLayout layout_of(DType t, int block_size = 4) {
  KvLayout l;
  l.n_layers = 2;
  l.n_kv_heads = 2;
  l.head_dim = 8;
  l.block_size = block_size;
  l.dtype = t;
  return l;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

TEST_F(CudaKernelTest, GatherThenScatterMovesWholeBlocks) {
  constexpr int64_t kBlocks = 6;
  for (DType t : testing::kAllDTypes) {
    for (size_t byte_offset : {size_t{0}, size_t{2}}) {  // 2: misaligned, forces 2-byte copy units
      SCOPED_TRACE(testing::dtype_label(t) + " offset=" + std::to_string(byte_offset));
      const KvLayout l = layout_of(t);
      const size_t bb = l.block_bytes();
      const auto pool = random_bytes(kBlocks * bb + byte_offset, 111);
      const std::vector<int32_t> ids = {4, 1, 1, 5};
      DeviceBuffer<uint8_t> d_pool(pool);
      DeviceBuffer<int32_t> d_ids(ids);
      DeviceBuffer<uint8_t> d_packed(ids.size() * bb + byte_offset);
      void* pool_ptr = d_pool.get() + byte_offset;
      void* packed_ptr = d_packed.get() + byte_offset;
      ASSERT_TRUE(kv_gather_blocks(ctx_, l, pool_ptr, kBlocks, d_ids.get(), 4, packed_ptr).ok());
      expect_clean();
      const auto packed = d_packed.download();
      for (size_t i = 0; i < ids.size(); ++i) {
        EXPECT_EQ(0, std::memcmp(packed.data() + byte_offset + i * bb, pool.data() + byte_offset + ids[i] * bb, bb))
            << "packed block " << i;
      }

      // Scatter three of them into a fresh pool at other ids.
      const auto dst0 = random_bytes(kBlocks * bb + byte_offset, 112);
      const std::vector<int32_t> dst_ids = {2, 0, 5};
      DeviceBuffer<uint8_t> d_dst(dst0);
      DeviceBuffer<int32_t> d_dst_ids(dst_ids);
      ASSERT_TRUE(kv_scatter_blocks(ctx_, l, packed_ptr, d_dst_ids.get(), 3, d_dst.get() + byte_offset, kBlocks).ok());
      expect_clean();
      std::vector<uint8_t> want = dst0;
      for (size_t i = 0; i < dst_ids.size(); ++i) {
        std::memcpy(want.data() + byte_offset + dst_ids[i] * bb, packed.data() + byte_offset + i * bb, bb);
      }
      EXPECT_TRUE(d_dst.download() == want);
    }
  }
}

TEST_F(CudaKernelTest, BadBlockIdsAreSkippedAndReported) {
  constexpr int64_t kBlocks = 3;
  const KvLayout l = layout_of(DType::kBF16);
  const size_t bb = l.block_bytes();
  const auto pool = random_bytes(kBlocks * bb, 113);
  DeviceBuffer<uint8_t> d_pool(pool);

  const std::vector<int32_t> gather_ids = {2, 3};
  DeviceBuffer<int32_t> d_gather_ids(gather_ids);
  DeviceBuffer<uint8_t> d_packed(std::vector<uint8_t>(2 * bb, 0x5a));
  ASSERT_TRUE(kv_gather_blocks(ctx_, l, d_pool.get(), kBlocks, d_gather_ids.get(), 2, d_packed.get()).ok());
  Status st = take_index_errors(ctx_);
  EXPECT_NE(st.message().find("kv_gather_blocks: block_ids"), std::string::npos) << st.message();
  auto packed = d_packed.download();
  EXPECT_EQ(0, std::memcmp(packed.data(), pool.data() + 2 * bb, bb));
  EXPECT_EQ(packed[bb], 0x5a) << "the bad block is left untouched";

  // Scatter with a repeated id: the last occurrence wins and the repeat is reported.
  const auto in = random_bytes(3 * bb, 114);
  const std::vector<int32_t> scatter_ids = {1, 0, 1};
  DeviceBuffer<uint8_t> d_in(in);
  DeviceBuffer<int32_t> d_scatter_ids(scatter_ids);
  ASSERT_TRUE(kv_scatter_blocks(ctx_, l, d_in.get(), d_scatter_ids.get(), 3, d_pool.get(), kBlocks).ok());
  st = take_index_errors(ctx_);
  EXPECT_NE(st.message().find("appears more than once"), std::string::npos) << st.message();
  std::vector<uint8_t> want = pool;
  std::memcpy(want.data() + 0 * bb, in.data() + 1 * bb, bb);
  std::memcpy(want.data() + 1 * bb, in.data() + 2 * bb, bb);
  EXPECT_TRUE(d_pool.download() == want);
}

// Naive convert: every (layer, kv, head, position < tokens, d) element through f32, zeros past.
std::vector<uint8_t> reference_convert(const KvLayout& sl, const std::vector<uint8_t>& src, const KvLayout& dl,
                                       int64_t tokens) {
  const int64_t dst_blocks = (tokens + dl.block_size - 1) / dl.block_size;
  std::vector<uint8_t> dst(dst_blocks * dl.block_bytes(), 0);
  for (int layer = 0; layer < dl.n_layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int h = 0; h < dl.n_kv_heads; ++h) {
        for (int64_t pos = 0; pos < tokens; ++pos) {
          for (int d = 0; d < dl.head_dim; ++d) {
            const int64_t s = sl.index(pos / sl.block_size, layer, kv, h, static_cast<int>(pos % sl.block_size)) + d;
            const int64_t o = dl.index(pos / dl.block_size, layer, kv, h, static_cast<int>(pos % dl.block_size)) + d;
            if (sl.dtype == dl.dtype) {
              const size_t es = dtype_size(dl.dtype);
              std::memcpy(dst.data() + o * es, src.data() + s * es, es);
            } else {
              testing::ref_store(dl.dtype, dst.data(), o, testing::ref_load(sl.dtype, src.data(), s));
            }
          }
        }
      }
    }
  }
  return dst;
}

TEST_F(CudaKernelTest, KvConvertRelaysBlocksAndRoundsDtypes) {
  constexpr int64_t kTokens = 10;
  for (DType st : testing::kAllDTypes) {
    for (DType dt : testing::kAllDTypes) {
      for (int dst_bs : {3, 4, 16}) {
        SCOPED_TRACE(testing::dtype_label(st) + " -> " + testing::dtype_label(dt) + " block_size 4 -> " +
                     std::to_string(dst_bs));
        const KvLayout sl = layout_of(st, 4);
        const KvLayout dl = layout_of(dt, dst_bs);
        const int64_t src_blocks = (kTokens + 3) / 4;
        const int64_t dst_blocks = (kTokens + dst_bs - 1) / dst_bs;
        const testing::Stored src =
            testing::store_as(testing::random_floats(src_blocks * sl.block_elems(), 115, -100.0f, 100.0f), st);
        DeviceBuffer<uint8_t> d_src(src.bytes);
        DeviceBuffer<uint8_t> d_dst(std::vector<uint8_t>(dst_blocks * dl.block_bytes(), 0xff));
        ASSERT_TRUE(kv_convert(ctx_, sl, d_src.get(), dl, d_dst.get(), kTokens).ok());
        expect_clean();
        EXPECT_TRUE(d_dst.download() == reference_convert(sl, src.bytes, dl, kTokens));
      }
    }
  }
}

TEST(CudaKvBlocksArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  auto* p = reinterpret_cast<uint8_t*>(testing::fake_device_ptr());
  auto* far = reinterpret_cast<uint8_t*>(testing::fake_device_ptr(1 << 24));
  const auto* ids = reinterpret_cast<const int32_t*>(testing::fake_device_ptr(2 << 24));
  const KvLayout l = layout_of(DType::kF16);
  Status s = kv_gather_blocks(ctx, l, p, 4, nullptr, 2, far);
  EXPECT_NE(s.message().find("block_ids is null"), std::string::npos) << s.message();
  s = kv_gather_blocks(ctx, l, p, 4, ids, 2, p + l.block_bytes());
  EXPECT_NE(s.message().find("out overlaps pool"), std::string::npos) << s.message();
  s = kv_scatter_blocks(ctx, l, nullptr, ids, 2, p, 4);
  EXPECT_NE(s.message().find("in is null"), std::string::npos) << s.message();
  KvLayout other = layout_of(DType::kF16);
  other.head_dim = 16;
  s = kv_convert(ctx, l, p, other, far, 5);
  EXPECT_NE(s.message().find("layouts disagree"), std::string::npos) << s.message();
  s = kv_convert(ctx, l, p, l, p + 8, 5);
  EXPECT_NE(s.message().find("dst overlaps src"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
