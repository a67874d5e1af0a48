// SwiGLU gate, out = silu(gate) * up with silu(x) = x / (1 + exp(-x)) (torch's CPU formula):
// reads gate and up once, writes out once; out may alias either input since each element is
// read before it is written.
#include <cmath>

#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status swiglu(const CpuContext& ctx, const float* gate, const float* up, float* out, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(check_swiglu_args("swiglu", gate, up, out, n));
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
