// RMSNorm as Hugging Face's LlamaRMSNorm in f32: r = 1 / sqrt(mean(x^2) + eps), y = w * (x * r).
// Two passes over each row of x (sum of squares, then scale) and one over w; rows in parallel.
// The sum of squares uses eight interleaved partial sums combined in a fixed order, so it
// vectorises and still depends only on dim, never on the batch or the thread count.
#include <cmath>
#include <vector>

#include "kernels/cpu/row_convert.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status rms_norm(const CpuContext& ctx, const float* x, const void* w, DType wt, float* y, int64_t rows, int64_t dim,
                float eps) {
  HOTSWAP_RETURN_IF_ERROR(check_rms_norm_args("rms_norm", x, w, wt, y, rows, dim, eps));
  if (rows == 0) return Status::ok_status();

  std::vector<float> wf(static_cast<size_t>(dim));
  detail::load_row_f32(w, wt, 0, dim, wf.data());
  parallel_for(
      ctx.pool, rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const float* xr = x + r * dim;
          float* yr = y + r * dim;
          float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 8 <= dim; i += 8) {
            for (int l = 0; l < 8; ++l) part[l] += xr[i + l] * xr[i + l];
          }
          for (; i < dim; ++i) part[i & 7] += xr[i] * xr[i];
          const float ss = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
          const float inv_rms = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
          for (int64_t j = 0; j < dim; ++j) yr[j] = wf[static_cast<size_t>(j)] * (xr[j] * inv_rms);
        }
      },
      std::max<int64_t>(1, 8192 / dim));
  return Status::ok_status();
}

}  // namespace hotswap::kernels
