// The argument checks both backends share (kernels/op_checks.h): the exact words a caller sees
// from the CPU kernels and the CUDA wrappers alike, sizes checked before pointers, and an empty
// batch accepted without the buffers it would not touch.
#include "kernels/op_checks.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace hotswap::kernels {
namespace {

KvLayout small_layout() {
  return KvLayout{.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4, .dtype = DType::kF32};
}

TEST(OpChecksTest, MessagesNameTheOpTheParameterAndTheValues) {
  float a[64] = {};
  float b[64] = {};
  const int32_t ints[4] = {};
  const int64_t slots[4] = {};
  const KvLayout l = small_layout();
  KvLayout no_layers = l;
  no_layers.n_layers = 0;
  KvLayout bad_dtype = l;
  bad_dtype.dtype = static_cast<DType>(7);
  KvLayout other_head_dim = l;
  other_head_dim.head_dim = 16;

  const struct {
    Status got;
    std::string want;
  } cases[] = {
      {check_embedding_args("embedding", a, DType::kF32, 8, 0, ints, 2, b), "embedding: dim must be > 0, got 0"},
      {check_rms_norm_args("rms_norm", a, b, DType::kF32, b, 2, 4, -1.0f), "rms_norm: eps must be >= 0, got -1"},
      {check_matmul_args("matmul", a, 2, 4, nullptr, DType::kF32, 8, b),
       "matmul: w is null but 32 elements are needed"},
      {check_matmul_args("matmul", a, 2, 4, b, DType::kF32, 8, a + 4), "matmul: y overlaps x (rows=2, in=4, out=8)"},
      {check_add_args("add", a, b, -1), "add: n must be >= 0, got -1"},
      {check_rope_args("rope", a, b, ints, 2, 1, 1, 7, 1e4f), "rope: head_dim must be even, got 7"},
      {check_swiglu_args("swiglu", a, nullptr, b, 4), "swiglu: up is null but 4 elements are needed"},
      {check_kv_write_args("kv_write", l, a, 4, 2, a, b, slots, 1), "kv_write: layer = 2 is outside [0, 2)"},
      {check_paged_attention_args("paged_attention", l, a, 4, 0, a, b, 1, 3, ints, ints, ints, 2),
       "paged_attention: n_heads = 3 is not a multiple of n_kv_heads = 2"},
      {check_paged_attention_args("paged_attention", l, a, 4, 0, a, a + 8, 1, 2, ints, ints, ints, 2),
       "paged_attention: out overlaps q"},
      {check_softmax_args("softmax", a, b, 2, 0), "softmax: vocab must be > 0, got 0"},
      {check_argmax_args("argmax", a, 1, int64_t{1} << 32, ints),
       "argmax: vocab = 4294967296 does not fit the int32 output"},
      {check_kv_gather_blocks_args("kv_gather_blocks", no_layers, a, 4, ints, 2, b),
       "kv_gather_blocks: layout has non-positive sizes (n_layers=0, n_kv_heads=2, head_dim=8, block_size=4)"},
      {check_kv_gather_blocks_args("kv_gather_blocks", bad_dtype, a, 4, ints, 2, b),
       "kv_gather_blocks: layout has unknown dtype code 7"},
      {check_kv_scatter_blocks_args("kv_scatter_blocks", l, nullptr, ints, 2, a, 4),
       "kv_scatter_blocks: in is null but 512 elements are needed"},
      {check_kv_convert_args("kv_convert", l, a, other_head_dim, b, 5),
       "kv_convert: layouts disagree on the model: src (n_layers=2, n_kv_heads=2, head_dim=8) vs dst (n_layers=2, "
       "n_kv_heads=2, head_dim=16)"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.got.code(), StatusCode::kInvalidArgument) << c.want;
    EXPECT_EQ(c.got.message(), c.want);
  }
}

TEST(OpChecksTest, SizesAreCheckedBeforePointers) {
  const Status st = check_matmul_args("matmul", nullptr, 2, 0, nullptr, DType::kF32, 8, nullptr);
  EXPECT_EQ(st.message(), "matmul: in must be > 0, got 0");
}

TEST(OpChecksTest, EmptyBatchIsValidWithoutItsBuffers) {
  EXPECT_TRUE(check_embedding_args("embedding", nullptr, DType::kF32, 8, 4, nullptr, 0, nullptr).ok());
  EXPECT_TRUE(check_matmul_args("matmul", nullptr, 0, 4, nullptr, DType::kF32, 8, nullptr).ok());
  EXPECT_TRUE(check_kv_write_args("kv_write", small_layout(), nullptr, 4, 0, nullptr, nullptr, nullptr, 0).ok());
  EXPECT_TRUE(check_kv_convert_args("kv_convert", small_layout(), nullptr, small_layout(), nullptr, 0).ok());
}

}  // namespace
}  // namespace hotswap::kernels
