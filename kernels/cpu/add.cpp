// Residual add, y += x: one read of x, one read and write of y, split into contiguous chunks.
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status add(const CpuContext& ctx, float* y, const float* x, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(check_add_args("add", y, x, n));
  parallel_for(
      ctx.pool, n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) y[i] += x[i];
      },
      1 << 15);
  return Status::ok_status();
}

}  // namespace hotswap::kernels
