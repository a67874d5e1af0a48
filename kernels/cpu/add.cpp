// Residual add, y += x: one read of x, one read and write of y, split into contiguous chunks.
#include "kernels/cpu/check.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status add(const CpuContext& ctx, float* y, const float* x, int64_t n) {
  constexpr const char* kOp = "add";
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(kOp, n, "n"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(kOp, y, "y", n));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(kOp, x, "x", n));
  parallel_for(
      ctx.pool, n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) y[i] += x[i];
      },
      1 << 15);
  return Status::ok_status();
}

}  // namespace hotswap::kernels
