// RMSNorm on the GPU, as Hugging Face's LlamaRMSNorm in f32:
// r = 1 / sqrt(mean(x^2) + eps), y = w * (x * r).
//
// One thread block (kThreads) per row: each thread sums the squares of its strided elements,
// a fixed-order block reduction gives the row's sum, then each thread scales its elements.
// Traffic: x read twice (the second read usually from L1/L2), w read once per row, y written
// once. The reduction order depends only on dim and kThreads, never on rows. y may alias x:
// each element is read and written by the same thread, after the reduction's barriers.
#include <cuda_runtime.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

template <DType WT, int kThreads>
__global__ void __launch_bounds__(kThreads)
    rms_norm_kernel(const float* x, const void* __restrict__ w, float* y, int64_t dim, float eps) {
  __shared__ float scratch[kThreads / 32];
  const float* xr = x + int64_t{blockIdx.x} * dim;
  float* yr = y + int64_t{blockIdx.x} * dim;
  float ss = 0.0f;
  for (int64_t d = threadIdx.x; d < dim; d += kThreads) ss = fmaf(xr[d], xr[d], ss);
  ss = detail::block_sum<kThreads>(ss, scratch);
  const float inv_rms = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  for (int64_t d = threadIdx.x; d < dim; d += kThreads) {
    yr[d] = detail::load_f32<WT>(w, d) * (xr[d] * inv_rms);
  }
}

}  // namespace

Status rms_norm(const CudaContext& ctx, const float* x, const void* w, DType wt, float* y, int64_t rows, int64_t dim,
                float eps) {
  constexpr const char* kOp = "rms_norm";
  HOTSWAP_RETURN_IF_ERROR(check_rms_norm_args(kOp, x, w, wt, y, rows, dim, eps));
  if (rows == 0) return Status::ok_status();
  // Rows run in separate thread blocks, so y overlapping another row of x would race.
  if (x != y && detail::overlaps(x, rows * dim * 4, y, rows * dim * 4)) {
    return detail::invalid(kOp, "y partially overlaps x (it may alias x exactly, or not overlap at all)");
  }
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, rows, INT32_MAX, "rows"));
  constexpr int kThreads = 256;
  return detail::with_dtype(wt, [&](auto tag) {
    rms_norm_kernel<decltype(tag)::value, kThreads>
        <<<static_cast<unsigned>(rows), kThreads, 0, detail::stream_of(ctx)>>>(x, w, y, dim, eps);
    return detail::launch_status("rms_norm kernel launch");
  });
}

}  // namespace hotswap::kernels::cuda
