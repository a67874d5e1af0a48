// Row-wise softmax and argmax over logits. softmax: three passes per row (max, exp and sum,
// scale), sequential within a row so the result depends only on the row; rows in parallel.
// argmax: one pass per row.
#include <cmath>

#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status softmax(const CpuContext& ctx, const float* logits, float* probs, int64_t rows, int64_t vocab) {
  HOTSWAP_RETURN_IF_ERROR(check_softmax_args("softmax", logits, probs, rows, vocab));
  parallel_for(ctx.pool, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = logits + r * vocab;
      float* p = probs + r * vocab;
      float m = in[0];
      for (int64_t i = 1; i < vocab; ++i) m = std::fmax(m, in[i]);
      // A row of all -inf yields NaN, as torch does; a NaN logit poisons the row, as in torch.
      float sum = 0.0f;
      for (int64_t i = 0; i < vocab; ++i) {
        const float e = std::exp(in[i] - m);
        p[i] = e;
        sum += e;
      }
      for (int64_t i = 0; i < vocab; ++i) p[i] /= sum;
    }
  });
  return Status::ok_status();
}

Status argmax(const CpuContext& ctx, const float* logits, int64_t rows, int64_t vocab, int32_t* out) {
  HOTSWAP_RETURN_IF_ERROR(check_argmax_args("argmax", logits, rows, vocab, out));
  parallel_for(ctx.pool, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = logits + r * vocab;
      int64_t best = 0;
      float best_v = in[0];
      if (!std::isnan(best_v)) {
        for (int64_t i = 1; i < vocab; ++i) {
          // torch.argmax treats NaN as the largest value; the first NaN wins.
          if (std::isnan(in[i])) {
            best = i;
            break;
          }
          if (in[i] > best_v) {
            best_v = in[i];
            best = i;
          }
        }
      }
      out[r] = static_cast<int32_t>(best);
    }
  });
  return Status::ok_status();
}

}  // namespace hotswap::kernels
