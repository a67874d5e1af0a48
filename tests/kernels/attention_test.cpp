#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace hotswap::kernels {
namespace {

using testing::kAllDTypes;

// A paged cache holding several sequences, each in a shuffled, non-contiguous set of blocks,
// plus the stored K/V values per sequence for the reference: k[seq][(pos * n_kv_heads + h) * D + d].
struct PagedCache {
  KvLayout layout;
  int layer = 1;
  int64_t n_blocks = 0;
  std::vector<uint8_t> pool;
  std::vector<int32_t> tables;
  int64_t stride = 0;
  std::vector<int> lens;
  std::vector<std::vector<float>> k, v;  // inputs as f32
  std::vector<std::vector<float>> k_stored, v_stored;

  int64_t slot(int seq, int pos) const {
    return int64_t{tables[static_cast<size_t>(seq * stride + pos / layout.block_size)]} * layout.block_size +
           pos % layout.block_size;
  }
};

PagedCache make_cache(const KvLayout& layout, const std::vector<int>& lens, uint32_t seed) {
  PagedCache c;
  c.layout = layout;
  c.lens = lens;
  int64_t needed = 0;
  for (int len : lens) {
    c.stride = std::max<int64_t>(c.stride, (len + layout.block_size - 1) / layout.block_size);
    needed += (len + layout.block_size - 1) / layout.block_size;
  }
  c.n_blocks = needed + 3;  // spare blocks that no sequence uses
  c.pool.assign(static_cast<size_t>(c.n_blocks) * layout.block_bytes(), 0);
  std::vector<int32_t> ids(static_cast<size_t>(c.n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.tables.assign(static_cast<size_t>(c.stride * lens.size()), -1);
  size_t next = 0;
  for (size_t s = 0; s < lens.size(); ++s) {
    for (int b = 0; b < (lens[s] + layout.block_size - 1) / layout.block_size; ++b) {
      c.tables[s * c.stride + b] = ids[next++];
    }
  }
  const size_t row = static_cast<size_t>(layout.n_kv_heads) * layout.head_dim;
  for (size_t s = 0; s < lens.size(); ++s) {
    c.k.push_back(testing::random_floats(lens[s] * row, seed + 100 + static_cast<uint32_t>(s)));
    c.v.push_back(testing::random_floats(lens[s] * row, seed + 200 + static_cast<uint32_t>(s)));
    c.k_stored.push_back(testing::store_as(c.k.back(), layout.dtype).values);
    c.v_stored.push_back(testing::store_as(c.v.back(), layout.dtype).values);
  }
  return c;
}

// Writes positions [from, to) of sequence s into the cache.
void write_positions(PagedCache& c, int s, int from, int to) {
  const size_t row = static_cast<size_t>(c.layout.n_kv_heads) * c.layout.head_dim;
  std::vector<int64_t> slots;
  for (int p = from; p < to; ++p) slots.push_back(c.slot(s, p));
  ASSERT_TRUE(kv_write(CpuContext{}, c.layout, c.pool.data(), c.n_blocks, c.layer,
                       c.k[static_cast<size_t>(s)].data() + from * row, c.v[static_cast<size_t>(s)].data() + from * row,
                       slots.data(), to - from)
                  .ok());
}

void write_all(PagedCache& c) {
  for (size_t s = 0; s < c.lens.size(); ++s) write_positions(c, static_cast<int>(s), 0, c.lens[s]);
}

// Naive causal attention in double for one token.
std::vector<double> naive_attention(const PagedCache& c, const float* q, int n_heads, int seq, int pos, float scale) {
  const int D = c.layout.head_dim;
  const int kvh_n = c.layout.n_kv_heads;
  const int group = n_heads / kvh_n;
  const auto& K = c.k_stored[static_cast<size_t>(seq)];
  const auto& V = c.v_stored[static_cast<size_t>(seq)];
  std::vector<double> out(static_cast<size_t>(n_heads) * D, 0.0);
  for (int h = 0; h < n_heads; ++h) {
    const int kvh = h / group;
    std::vector<double> sc(static_cast<size_t>(pos + 1));
    double m = -INFINITY;
    for (int j = 0; j <= pos; ++j) {
      double s = 0;
      for (int d = 0; d < D; ++d)
        s += static_cast<double>(q[h * D + d]) * K[(static_cast<size_t>(j) * kvh_n + kvh) * D + d];
      sc[static_cast<size_t>(j)] = s * scale;
      m = std::max(m, sc[static_cast<size_t>(j)]);
    }
    double sum = 0;
    for (double& s : sc) {
      s = std::exp(s - m);
      sum += s;
    }
    for (int j = 0; j <= pos; ++j) {
      for (int d = 0; d < D; ++d) {
        out[static_cast<size_t>(h) * D + d] +=
            sc[static_cast<size_t>(j)] / sum * V[(static_cast<size_t>(j) * kvh_n + kvh) * D + d];
      }
    }
  }
  return out;
}

struct QueryBatch {
  std::vector<int32_t> seq, pos;
  std::vector<float> q;
};

// Every position of every sequence, interleaved in a shuffled order.
QueryBatch all_positions(const PagedCache& c, int n_heads, uint32_t seed) {
  QueryBatch b;
  for (size_t s = 0; s < c.lens.size(); ++s) {
    for (int p = 0; p < c.lens[s]; ++p) {
      b.seq.push_back(static_cast<int32_t>(s));
      b.pos.push_back(p);
    }
  }
  std::vector<size_t> order(b.seq.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  QueryBatch shuffled;
  for (size_t i : order) {
    shuffled.seq.push_back(b.seq[i]);
    shuffled.pos.push_back(b.pos[i]);
  }
  shuffled.q = testing::random_floats(shuffled.seq.size() * n_heads * c.layout.head_dim, seed + 1, -2.0f, 2.0f);
  return shuffled;
}

TEST(PagedAttentionTest, PagedAttentionMatchesNaiveReferenceWithGqaAndShuffledBlocks) {
  ThreadPool pool(2);
  struct Heads {
    int n_heads, n_kv_heads;
  };
  uint32_t seed = 1;
  for (DType t : kAllDTypes) {
    for (Heads hc : {Heads{4, 2}, Heads{2, 2}, Heads{8, 1}}) {
      for (int block_size : {16, 5}) {
        for (int head_dim : {32, 20}) {
          KvLayout layout{
              .n_layers = 2, .n_kv_heads = hc.n_kv_heads, .head_dim = head_dim, .block_size = block_size, .dtype = t};
          PagedCache c = make_cache(layout, {1, 17, 40}, seed++);
          write_all(c);
          const QueryBatch qb = all_positions(c, hc.n_heads, seed++);
          const int64_t tokens = static_cast<int64_t>(qb.seq.size());
          const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
          std::vector<float> out(qb.q.size(), NAN);
          ASSERT_TRUE(paged_attention(CpuContext{&pool}, layout, c.pool.data(), c.n_blocks, c.layer, qb.q.data(),
                                      out.data(), tokens, hc.n_heads, qb.seq.data(), qb.pos.data(), c.tables.data(),
                                      c.stride, scale)
                          .ok());
          const size_t tok_elems = static_cast<size_t>(hc.n_heads) * head_dim;
          for (int64_t i = 0; i < tokens; ++i) {
            const auto ref = naive_attention(c, qb.q.data() + i * tok_elems, hc.n_heads, qb.seq[i], qb.pos[i], scale);
            for (size_t e = 0; e < tok_elems; ++e) {
              ASSERT_NEAR(out[i * tok_elems + e], ref[e], 2e-5)
                  << dtype_name(t) << " heads=" << hc.n_heads << "/" << hc.n_kv_heads << " bs=" << block_size
                  << " seq=" << qb.seq[i] << " pos=" << qb.pos[i] << " e=" << e;
            }
          }
        }
      }
    }
  }
}

// A sequence prefilled in one call and the same sequence decoded one token at a time (KV written
// step by step) give identical bits; so does a mixed batch of several sequences vs. each token
// alone. This is what makes migration and batching invisible in the output.
TEST(PagedAttentionTest, PrefillAndDecodeGiveIdenticalBits) {
  ThreadPool pool4(4);
  for (DType t : kAllDTypes) {
    const int n_heads = 6;
    KvLayout layout{.n_layers = 2, .n_kv_heads = 2, .head_dim = 24, .block_size = 8, .dtype = t};
    const float scale = 0.2f;
    const size_t tok_elems = static_cast<size_t>(n_heads) * layout.head_dim;

    PagedCache prefill = make_cache(layout, {37}, 77);
    write_all(prefill);
    const int len = 37;
    std::vector<int32_t> seq(len, 0), pos(len);
    std::iota(pos.begin(), pos.end(), 0);
    const auto q = testing::random_floats(len * tok_elems, 78);
    std::vector<float> out_prefill(q.size());
    ASSERT_TRUE(paged_attention(CpuContext{&pool4}, layout, prefill.pool.data(), prefill.n_blocks, prefill.layer,
                                q.data(), out_prefill.data(), len, n_heads, seq.data(), pos.data(),
                                prefill.tables.data(), prefill.stride, scale)
                    .ok());

    PagedCache decode = make_cache(layout, {37}, 77);  // same blocks, nothing written yet
    std::vector<float> out_decode(q.size());
    for (int p = 0; p < len; ++p) {
      write_positions(decode, 0, p, p + 1);
      const int32_t s0 = 0, p0 = p;
      ASSERT_TRUE(paged_attention(CpuContext{nullptr}, layout, decode.pool.data(), decode.n_blocks, decode.layer,
                                  q.data() + p * tok_elems, out_decode.data() + p * tok_elems, 1, n_heads, &s0, &p0,
                                  decode.tables.data(), decode.stride, scale)
                      .ok());
    }
    EXPECT_TRUE(testing::bits_equal(out_prefill, out_decode)) << dtype_name(t);

    // Several sequences of different lengths, one decode token each, batched vs. alone.
    PagedCache multi = make_cache(layout, {3, 20, 9, 33}, 90);
    write_all(multi);
    const std::vector<int32_t> mseq = {2, 0, 3, 1};
    const std::vector<int32_t> mpos = {8, 2, 32, 19};
    const auto mq = testing::random_floats(mseq.size() * tok_elems, 91);
    std::vector<float> batched(mq.size());
    ASSERT_TRUE(paged_attention(CpuContext{&pool4}, layout, multi.pool.data(), multi.n_blocks, multi.layer, mq.data(),
                                batched.data(), 4, n_heads, mseq.data(), mpos.data(), multi.tables.data(), multi.stride,
                                scale)
                    .ok());
    for (size_t i = 0; i < mseq.size(); ++i) {
      std::vector<float> alone(tok_elems);
      ASSERT_TRUE(paged_attention(CpuContext{nullptr}, layout, multi.pool.data(), multi.n_blocks, multi.layer,
                                  mq.data() + i * tok_elems, alone.data(), 1, n_heads, &mseq[i], &mpos[i],
                                  multi.tables.data(), multi.stride, scale)
                      .ok());
      const std::vector<float> row(batched.begin() + i * tok_elems, batched.begin() + (i + 1) * tok_elems);
      EXPECT_TRUE(testing::bits_equal(row, alone)) << dtype_name(t) << " token " << i;
    }
  }
}

TEST(PagedAttentionTest, PagedAttentionRejectsBadArguments) {
  KvLayout layout{.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4, .dtype = DType::kF32};
  PagedCache c = make_cache(layout, {6}, 5);
  write_all(c);
  const int n_heads = 4;
  std::vector<float> q(n_heads * 8, 0.5f), out(n_heads * 8);
  int32_t seq = 0, pos = 5;
  const CpuContext ctx;
  auto call = [&](const KvLayout& l, int layer, const float* qp, float* op, int heads, const int32_t* sp,
                  const int32_t* pp, const int32_t* tables, int64_t stride) {
    return paged_attention(ctx, l, c.pool.data(), c.n_blocks, layer, qp, op, 1, heads, sp, pp, tables, stride, 1.0f);
  };
  EXPECT_TRUE(call(layout, 1, q.data(), out.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), out.data(), 3, &seq, &pos, c.tables.data(), c.stride).ok());  // 3 % 2
  EXPECT_FALSE(call(layout, 2, q.data(), out.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, -1, q.data(), out.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, nullptr, out.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), nullptr, n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), q.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), out.data(), n_heads, &seq, &pos, nullptr, c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), out.data(), n_heads, &seq, &pos, c.tables.data(), 1).ok());  // needs 2
  int32_t neg = -1;
  EXPECT_FALSE(call(layout, 1, q.data(), out.data(), n_heads, &neg, &pos, c.tables.data(), c.stride).ok());
  EXPECT_FALSE(call(layout, 1, q.data(), out.data(), n_heads, &seq, &neg, c.tables.data(), c.stride).ok());
  std::vector<int32_t> bad_tables = c.tables;
  bad_tables[1] = static_cast<int32_t>(c.n_blocks);
  const Status st = call(layout, 1, q.data(), out.data(), n_heads, &seq, &pos, bad_tables.data(), c.stride);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("block_tables"), std::string::npos) << st.message();
  KvLayout broken = layout;
  broken.head_dim = 0;
  EXPECT_FALSE(call(broken, 1, q.data(), out.data(), n_heads, &seq, &pos, c.tables.data(), c.stride).ok());
}

}  // namespace
}  // namespace hotswap::kernels
