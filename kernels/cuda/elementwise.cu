// The f32 elementwise ops on the GPU: add (y += x) and swiglu (out = silu(gate) * up, with
// silu(g) = g / (1 + exp(-g)), torch's formula).
//
// Grid-stride loops over float4 vectors when every pointer is 16-byte aligned, then a scalar
// tail (or scalar throughout when not aligned). Traffic: each input read once, the output
// written once. Each element's arithmetic depends only on its own inputs; outputs may alias an
// input exactly, since each element is read before it is written by the same thread.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;  // enough to fill an H100 several times over; the loop covers the rest

struct AddOp {
  __device__ __forceinline__ float operator()(float y, float x) const { return y + x; }
};

struct SwigluOp {
  __device__ __forceinline__ float operator()(float g, float u) const { return g / (1.0f + expf(-g)) * u; }
};

// out[i] = op(a[i], b[i]).
template <typename Op, bool kVec>
__global__ void __launch_bounds__(kThreads) binary_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * kThreads;
  const int64_t first = int64_t{blockIdx.x} * kThreads + threadIdx.x;
  const Op op;
  int64_t scalar_begin = 0;
  if constexpr (kVec) {
    const int64_t n4 = n / 4;
    for (int64_t i = first; i < n4; i += stride) {
      const float4 va = reinterpret_cast<const float4*>(a)[i];
      const float4 vb = reinterpret_cast<const float4*>(b)[i];
      reinterpret_cast<float4*>(out)[i] = make_float4(op(va.x, vb.x), op(va.y, vb.y), op(va.z, vb.z), op(va.w, vb.w));
    }
    scalar_begin = n4 * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) out[i] = op(a[i], b[i]);
}

template <typename Op>
Status launch_binary(const CudaContext& ctx, const float* a, const float* b, float* out, int64_t n, const char* what) {
  const bool vec = detail::aligned16(a) && detail::aligned16(b) && detail::aligned16(out);
  const int64_t units = vec ? std::max<int64_t>(1, n / 4) : n;
  const auto blocks = static_cast<unsigned>(std::min(kMaxBlocks, detail::ceil_div(units, kThreads)));
  if (vec) {
    binary_kernel<Op, true><<<blocks, kThreads, 0, detail::stream_of(ctx)>>>(a, b, out, n);
  } else {
    binary_kernel<Op, false><<<blocks, kThreads, 0, detail::stream_of(ctx)>>>(a, b, out, n);
  }
  return detail::launch_status(what);
}

}  // namespace

Status add(const CudaContext& ctx, float* y, const float* x, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(check_add_args("add", y, x, n));
  if (n == 0) return Status::ok_status();
  return launch_binary<AddOp>(ctx, y, x, y, n, "add kernel launch");
}

Status swiglu(const CudaContext& ctx, const float* gate, const float* up, float* out, int64_t n) {
  HOTSWAP_RETURN_IF_ERROR(check_swiglu_args("swiglu", gate, up, out, n));
  if (n == 0) return Status::ok_status();
  return launch_binary<SwigluOp>(ctx, gate, up, out, n, "swiglu kernel launch");
}

}  // namespace hotswap::kernels::cuda
