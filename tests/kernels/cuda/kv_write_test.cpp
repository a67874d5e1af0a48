// kv_write (CUDA): every element lands in its slot of the paged layout, converted exactly as
// the naive f32 -> dtype rounding says, and nothing else in the pool changes.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

KvLayout small_layout(DType t) {
  KvLayout l;
  l.n_layers = 2;
  l.n_kv_heads = 3;
  l.head_dim = 24;
  l.block_size = 4;
  l.dtype = t;
  return l;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  // Small exponents only, so every f32/f16/bf16 pattern in the pool is an ordinary number.
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(rng() & (i % 2 == 0 ? 0xff : 0x3b));
  return b;
}

TEST_F(CudaKernelTest, KvWritePutsEachTokenInItsSlotInEveryDtype) {
  constexpr int64_t kBlocks = 5;
  constexpr int kLayer = 1;
  for (DType t : testing::kAllDTypes) {
    SCOPED_TRACE(testing::dtype_label(t));
    const KvLayout layout = small_layout(t);
    const size_t pool_bytes = kBlocks * layout.block_bytes();
    const auto pool0 = random_bytes(pool_bytes, 81);
    std::vector<int64_t> slots(kBlocks * layout.block_size);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), std::mt19937(82));
    slots.resize(7);
    const int64_t tokens = static_cast<int64_t>(slots.size());
    const int64_t row = int64_t{layout.n_kv_heads} * layout.head_dim;
    const auto k = testing::random_floats(tokens * row, 83, -5.0f, 5.0f);
    const auto v = testing::random_floats(tokens * row, 84, -5.0f, 5.0f);

    DeviceBuffer<uint8_t> d_pool(pool0);
    DeviceBuffer<float> d_k(k);
    DeviceBuffer<float> d_v(v);
    DeviceBuffer<int64_t> d_slots(slots);
    ASSERT_TRUE(
        kv_write(ctx_, layout, d_pool.get(), kBlocks, kLayer, d_k.get(), d_v.get(), d_slots.get(), tokens).ok());
    expect_clean();

    std::vector<uint8_t> want = pool0;
    for (int64_t tk = 0; tk < tokens; ++tk) {
      const int64_t block = slots[tk] / layout.block_size;
      const int slot = static_cast<int>(slots[tk] % layout.block_size);
      for (int h = 0; h < layout.n_kv_heads; ++h) {
        for (int d = 0; d < layout.head_dim; ++d) {
          const size_t src = tk * row + h * layout.head_dim + d;
          testing::ref_store(t, want.data(), layout.index(block, kLayer, 0, h, slot) + d, k[src]);
          testing::ref_store(t, want.data(), layout.index(block, kLayer, 1, h, slot) + d, v[src]);
        }
      }
    }
    EXPECT_TRUE(d_pool.download() == want);
  }
}

TEST_F(CudaKernelTest, KvWriteSkipsAndReportsSlotsOutsideThePool) {
  const KvLayout layout = small_layout(DType::kF32);
  constexpr int64_t kBlocks = 2;
  const auto pool0 = random_bytes(kBlocks * layout.block_bytes(), 85);
  const std::vector<int64_t> slots = {8, 1, -1};  // 8 = 2 blocks * 4 slots: one past the end
  const int64_t row = int64_t{layout.n_kv_heads} * layout.head_dim;
  const auto k = testing::random_floats(3 * row, 86);
  DeviceBuffer<uint8_t> d_pool(pool0);
  DeviceBuffer<float> d_k(k);
  DeviceBuffer<int64_t> d_slots(slots);
  ASSERT_TRUE(kv_write(ctx_, layout, d_pool.get(), kBlocks, 0, d_k.get(), d_k.get(), d_slots.get(), 3).ok());
  const Status st = take_index_errors(ctx_);
  EXPECT_NE(st.message().find("kv_write: slots"), std::string::npos) << st.message();
  std::vector<uint8_t> want = pool0;
  for (int h = 0; h < layout.n_kv_heads; ++h) {
    for (int d = 0; d < layout.head_dim; ++d) {
      for (int kv = 0; kv < 2; ++kv) {
        testing::ref_store(DType::kF32, want.data(), layout.index(0, 0, kv, h, 1) + d,
                           k[row + h * layout.head_dim + d]);
      }
    }
  }
  EXPECT_TRUE(d_pool.download() == want) << "only the in-range token is written";
}

TEST(CudaKvWriteArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  const auto* slots = reinterpret_cast<const int64_t*>(p);
  KvLayout layout = small_layout(DType::kF16);
  Status st = kv_write(ctx, layout, p, 4, 2, p, p, slots, 1);
  EXPECT_NE(st.message().find("layer = 2"), std::string::npos) << st.message();
  st = kv_write(ctx, layout, p, 4, 0, p, nullptr, slots, 1);
  EXPECT_NE(st.message().find("v is null"), std::string::npos) << st.message();
  layout.head_dim = 0;
  st = kv_write(ctx, layout, p, 4, 0, p, p, slots, 1);
  EXPECT_NE(st.message().find("layout has non-positive sizes"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
