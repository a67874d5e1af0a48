// SwiGLU gate, out = silu(gate) * up with silu(x) = x / (1 + exp(-x)) (torch's CPU formula):
// reads gate and up once, writes out once; out may alias either input since each element is
// read before it is written.
#include <cmath>

#include "kernels/cpu/check.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status swiglu(const CpuContext& ctx, const float* gate, const float* up, float* out, int64_t n) {
  constexpr const char* kOp = "swiglu";
  HOTSWAP_RETURN_IF_ERROR(detail::check_non_negative(kOp, n, "n"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(kOp, gate, "gate", n));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(kOp, up, "up", n));
  HOTSWAP_RETURN_IF_ERROR(detail::check_ptr(kOp, out, "out", n));
  parallel_for(
      ctx.pool, n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const float g = gate[i];
          out[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
      },
      1 << 13);
  return Status::ok_status();
}

}  // namespace hotswap::kernels
