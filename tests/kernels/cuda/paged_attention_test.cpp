// paged_attention (CUDA) against a naive causal softmax attention in double, over a pool whose
// blocks are shuffled, with GQA, two sequences, contexts longer than one 64-position chunk,
// prefill and decode tokens in one call; plus batch invariance and bad block tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/cuda/ops_cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace hotswap::kernels::cuda {
namespace {

using testing::CudaKernelTest;
using testing::DeviceBuffer;

struct AttentionCase {
  KvLayout layout;
  int64_t n_blocks = 0;
  int n_heads = 4;
  int layer = 1;
  int64_t stride = 0;
  std::vector<int32_t> tables;  // [2][stride]
  testing::Stored pool;
  std::vector<int32_t> token_seq;
  std::vector<int32_t> token_pos;
  std::vector<float> q;
  float scale = 0.0f;
};

AttentionCase make_case(DType t, int head_dim) {
  AttentionCase s;
  s.layout.n_layers = 2;
  s.layout.n_kv_heads = 2;
  s.layout.head_dim = head_dim;
  s.layout.block_size = 4;
  s.layout.dtype = t;
  const int64_t lens[2] = {70, 9};
  s.stride = (lens[0] + s.layout.block_size - 1) / s.layout.block_size;  // 18
  const int64_t used = s.stride + (lens[1] + s.layout.block_size - 1) / s.layout.block_size;
  s.n_blocks = used + 3;
  std::vector<int32_t> perm(s.n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(91));
  s.tables.assign(2 * s.stride, -1);  // unused entries are out of range on purpose: never read
  size_t next = 0;
  for (int seq = 0; seq < 2; ++seq) {
    for (int64_t b = 0; b < (lens[seq] + s.layout.block_size - 1) / s.layout.block_size; ++b) {
      s.tables[seq * s.stride + b] = perm[next++];
    }
  }
  s.pool = testing::store_as(testing::random_floats(s.n_blocks * s.layout.block_elems(), 92, -2.0f, 2.0f), t);
  // Prefill of all of sequence 1, and decode-like single positions of sequence 0.
  for (int32_t p = 0; p < lens[1]; ++p) {
    s.token_seq.push_back(1);
    s.token_pos.push_back(p);
  }
  for (int32_t p : {0, 31, 63, 64, 69}) {
    s.token_seq.push_back(0);
    s.token_pos.push_back(p);
  }
  s.q = testing::random_floats(s.token_seq.size() * s.n_heads * head_dim, 93, -1.5f, 1.5f);
  s.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  return s;
}

std::vector<double> reference(const AttentionCase& s) {
  const KvLayout& l = s.layout;
  const int group = s.n_heads / l.n_kv_heads;
  const size_t tokens = s.token_seq.size();
  std::vector<double> out(tokens * s.n_heads * l.head_dim);
  for (size_t t = 0; t < tokens; ++t) {
    const int32_t* table = s.tables.data() + s.token_seq[t] * s.stride;
    const int n_pos = s.token_pos[t] + 1;
    for (int h = 0; h < s.n_heads; ++h) {
      const int kvh = h / group;
      const float* q = s.q.data() + (t * s.n_heads + h) * l.head_dim;
      std::vector<double> scores(n_pos);
      double m = -INFINITY;
      for (int j = 0; j < n_pos; ++j) {
        const int64_t base = l.index(table[j / l.block_size], s.layer, 0, kvh, j % l.block_size);
        double dot = 0.0;
        for (int d = 0; d < l.head_dim; ++d) dot += double{q[d]} * s.pool.values[base + d];
        scores[j] = dot * s.scale;
        m = std::max(m, scores[j]);
      }
      double sum = 0.0;
      for (double& sc : scores) {
        sc = std::exp(sc - m);
        sum += sc;
      }
      double* o = out.data() + (t * s.n_heads + h) * l.head_dim;
      for (int j = 0; j < n_pos; ++j) {
        const int64_t base = l.index(table[j / l.block_size], s.layer, 1, kvh, j % l.block_size);
        for (int d = 0; d < l.head_dim; ++d) o[d] += scores[j] / sum * s.pool.values[base + d];
      }
    }
  }
  return out;
}

struct DeviceCase {
  explicit DeviceCase(const AttentionCase& s)
      : pool(s.pool.bytes), q(s.q), out(s.q.size()), seq(s.token_seq), pos(s.token_pos), tables(s.tables) {}
  DeviceBuffer<uint8_t> pool;
  DeviceBuffer<float> q;
  DeviceBuffer<float> out;
  DeviceBuffer<int32_t> seq;
  DeviceBuffer<int32_t> pos;
  DeviceBuffer<int32_t> tables;
};

TEST_F(CudaKernelTest, PagedAttentionMatchesReferenceInEveryDtype) {
  for (DType t : testing::kAllDTypes) {
    for (int head_dim : {40, 128}) {
      SCOPED_TRACE(testing::dtype_label(t) + " head_dim=" + std::to_string(head_dim));
      const AttentionCase s = make_case(t, head_dim);
      DeviceCase d(s);
      ASSERT_TRUE(paged_attention(ctx_, s.layout, d.pool.get(), s.n_blocks, s.layer, d.q.get(), d.out.get(),
                                  static_cast<int64_t>(s.token_seq.size()), s.n_heads, d.seq.get(), d.pos.get(),
                                  d.tables.get(), s.stride, s.scale)
                      .ok());
      expect_clean();
      testing::expect_close(d.out.download(), reference(s), 2e-5, 2e-5, "attention");
    }
  }
}

TEST_F(CudaKernelTest, PagedAttentionTokenGivesSameBitsAloneOrBatched) {
  const AttentionCase s = make_case(DType::kBF16, 64);
  DeviceCase d(s);
  const int64_t tokens = static_cast<int64_t>(s.token_seq.size());
  ASSERT_TRUE(paged_attention(ctx_, s.layout, d.pool.get(), s.n_blocks, s.layer, d.q.get(), d.out.get(), tokens,
                              s.n_heads, d.seq.get(), d.pos.get(), d.tables.get(), s.stride, s.scale)
                  .ok());
  const auto batched = d.out.download();
  const int64_t per_token = int64_t{s.n_heads} * s.layout.head_dim;
  for (int64_t t : {int64_t{0}, int64_t{8}, tokens - 1}) {
    DeviceBuffer<float> one(per_token);
    ASSERT_TRUE(paged_attention(ctx_, s.layout, d.pool.get(), s.n_blocks, s.layer, d.q.get() + t * per_token, one.get(),
                                1, s.n_heads, d.seq.get() + t, d.pos.get() + t, d.tables.get(), s.stride, s.scale)
                    .ok());
    const std::vector<float> want(batched.begin() + t * per_token, batched.begin() + (t + 1) * per_token);
    EXPECT_TRUE(testing::bits_equal(one.download(), want)) << "token " << t;
  }
  expect_clean();
}

TEST_F(CudaKernelTest, PagedAttentionBadBlockTablePoisonsOnlyItsTokens) {
  AttentionCase s = make_case(DType::kF32, 40);
  s.tables[0 * s.stride + 17] = static_cast<int32_t>(s.n_blocks);  // sequence 0's last block: outside the pool
  DeviceCase d(s);
  const int64_t tokens = static_cast<int64_t>(s.token_seq.size());
  ASSERT_TRUE(paged_attention(ctx_, s.layout, d.pool.get(), s.n_blocks, s.layer, d.q.get(), d.out.get(), tokens,
                              s.n_heads, d.seq.get(), d.pos.get(), d.tables.get(), s.stride, s.scale)
                  .ok());
  const Status st = take_index_errors(ctx_);
  EXPECT_NE(st.message().find("paged_attention: a used block_tables entry"), std::string::npos) << st.message();
  const auto out = d.out.download();
  const auto want = reference(make_case(DType::kF32, 40));
  const int64_t per_token = int64_t{s.n_heads} * s.layout.head_dim;
  for (int64_t t = 0; t < tokens; ++t) {
    // Only positions 68 and 69 of sequence 0 reach its 18th block.
    const bool poisoned = s.token_seq[t] == 0 && s.token_pos[t] >= 68;
    for (int64_t e = t * per_token; e < (t + 1) * per_token; ++e) {
      if (poisoned) {
        ASSERT_TRUE(std::isnan(out[e])) << "token " << t;
      } else {
        ASSERT_NEAR(out[e], want[e], 2e-5) << "token " << t;
      }
    }
  }
}

TEST(CudaPagedAttentionArgumentsTest, RejectsBadArguments) {
  const CudaContext ctx;
  float* p = testing::fake_device_ptr();
  float* far = testing::fake_device_ptr(1 << 20);
  const auto* ints = reinterpret_cast<const int32_t*>(testing::fake_device_ptr(2 << 20));
  KvLayout l;
  l.n_layers = 1;
  l.n_kv_heads = 2;
  l.head_dim = 8;
  Status st = paged_attention(ctx, l, p, 4, 0, p, far, 1, 3, ints, ints, ints, 4, 1.0f);
  EXPECT_NE(st.message().find("not a multiple of n_kv_heads"), std::string::npos) << st.message();
  st = paged_attention(ctx, l, p, 4, 1, p, far, 1, 4, ints, ints, ints, 4, 1.0f);
  EXPECT_NE(st.message().find("layer = 1"), std::string::npos) << st.message();
  st = paged_attention(ctx, l, p, 4, 0, p, p + 8, 1, 4, ints, ints, ints, 4, 1.0f);
  EXPECT_NE(st.message().find("out overlaps q"), std::string::npos) << st.message();
  st = paged_attention(ctx, l, p, 4, 0, p, far, 1, 4, nullptr, ints, ints, 4, 1.0f);
  EXPECT_NE(st.message().find("token_seq is null"), std::string::npos) << st.message();
  st = paged_attention(ctx, l, p, 4, 0, p, far, 1, 4, ints, ints, ints, 0, 1.0f);
  EXPECT_NE(st.message().find("block_table_stride"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hotswap::kernels::cuda
