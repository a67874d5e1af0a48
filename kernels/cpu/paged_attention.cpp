// Causal attention over the paged KV cache, one work item per (token, query head).
//
// For each item: scores_j = scale * q . k_j for positions j = 0..pos, reading the KV head's keys
// one block at a time (a block's keys for one head are one contiguous run of
// block_size * head_dim elements, converted to f32 once); softmax over the scores in f32 with
// the max subtracted; then out = sum_j p_j * v_j, again block by block. Traffic per item:
// (pos + 1) * head_dim elements of K and of V, plus the scores (pos + 1 floats, in cache).
// Query heads of one GQA group re-read the same K/V, which stays in L2 for short contexts.
//
// Every item's arithmetic depends only on its own q, its position and the cache, in a fixed
// order: a token gives the same bits whether it runs in a prefill batch or alone in decode.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/row_convert.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {
namespace {

// Eight interleaved partial sums combined in a fixed tree: vectorisable, and the order depends
// only on n.
float dot(const float* a, const float* b, int n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) part[l] += a[i + l] * b[i + l];
  }
  for (; i < n; ++i) part[i & 7] += a[i] * b[i];
  return ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
}

struct Scratch {
  std::vector<float> scores;
  std::vector<float> kv;  // one block of one head, as f32
  std::vector<float> acc;
};

}  // namespace

Status paged_attention(const CpuContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks, int layer,
                       const float* q, float* out, int64_t tokens, int n_heads, const int32_t* token_seq,
                       const int32_t* token_pos, const int32_t* block_tables, int64_t block_table_stride, float scale) {
  constexpr const char* kOp = "paged_attention";
  HOTSWAP_RETURN_IF_ERROR(check_paged_attention_args(kOp, layout, pool, n_blocks, layer, q, out, tokens, n_heads,
                                                     token_seq, token_pos, block_tables, block_table_stride));
  if (tokens == 0) return Status::ok_status();

  const int head_dim = layout.head_dim;
  const int bs = layout.block_size;
  // token_seq, token_pos and the used block table entries are host memory here, so they are
  // checked before any work (the CUDA twin checks them in its kernel).
  int64_t max_pos = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    if (token_seq[t] < 0) return detail::invalid(kOp, "token_seq[", t, "] = ", token_seq[t], " is negative");
    if (token_pos[t] < 0) return detail::invalid(kOp, "token_pos[", t, "] = ", token_pos[t], " is negative");
    const int64_t used = token_pos[t] / bs + 1;
    if (used > block_table_stride) {
      return detail::invalid(kOp, "token_pos[", t, "] = ", token_pos[t], " needs ", used,
                             " blocks but block_table_stride = ", block_table_stride);
    }
    const int32_t* table = block_tables + int64_t{token_seq[t]} * block_table_stride;
    for (int64_t b = 0; b < used; ++b) {
      if (table[b] < 0 || table[b] >= n_blocks) {
        return detail::invalid(kOp, "block_tables[", token_seq[t], "][", b, "] = ", table[b],
                               " is outside the pool [0, ", n_blocks, ") (token ", t, ")");
      }
    }
    max_pos = std::max<int64_t>(max_pos, token_pos[t]);
  }

  const int group = n_heads / layout.n_kv_heads;
  const bool direct = layout.dtype == DType::kF32;  // f32 pools are read in place, no copy
  parallel_for(ctx.pool, tokens * n_heads, [&](int64_t begin, int64_t end) {
    Scratch s;
    s.scores.resize(static_cast<size_t>(max_pos + 1));
    s.kv.resize(static_cast<size_t>(bs) * head_dim);
    s.acc.resize(static_cast<size_t>(head_dim));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / n_heads;
      const int h = static_cast<int>(item % n_heads);
      const int kvh = h / group;
      const int64_t n_pos = int64_t{token_pos[t]} + 1;
      const int32_t* table = block_tables + int64_t{token_seq[t]} * block_table_stride;
      const float* qv = q + item * head_dim;
      const int64_t n_used = (n_pos + bs - 1) / bs;

      auto block_run = [&](int64_t b, int kv, int count) -> const float* {
        const int64_t idx = layout.index(table[b], layer, kv, kvh, 0);
        if (direct) return static_cast<const float*>(pool) + idx;
        detail::load_row_f32(pool, layout.dtype, idx, int64_t{count} * head_dim, s.kv.data());
        return s.kv.data();
      };

      float m = -INFINITY;
      for (int64_t b = 0; b < n_used; ++b) {
        const int count = static_cast<int>(std::min<int64_t>(bs, n_pos - b * bs));
        const float* keys = block_run(b, 0, count);
        for (int j = 0; j < count; ++j) {
          const float sc = dot(qv, keys + int64_t{j} * head_dim, head_dim) * scale;
          s.scores[static_cast<size_t>(b * bs + j)] = sc;
          m = std::fmax(m, sc);
        }
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < n_pos; ++j) {
        const float e = std::exp(s.scores[static_cast<size_t>(j)] - m);
        s.scores[static_cast<size_t>(j)] = e;
        sum += e;
      }
      std::fill(s.acc.begin(), s.acc.end(), 0.0f);
      for (int64_t b = 0; b < n_used; ++b) {
        const int count = static_cast<int>(std::min<int64_t>(bs, n_pos - b * bs));
        const float* vals = block_run(b, 1, count);
        for (int j = 0; j < count; ++j) {
          const float p = s.scores[static_cast<size_t>(b * bs + j)] / sum;
          const float* vj = vals + int64_t{j} * head_dim;
          for (int d = 0; d < head_dim; ++d) s.acc[static_cast<size_t>(d)] += p * vj[d];
        }
      }
      std::copy(s.acc.begin(), s.acc.end(), out + item * head_dim);
    }
  });
  return Status::ok_status();
}

}  // namespace hotswap::kernels
