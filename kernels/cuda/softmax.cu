// Row-wise softmax and argmax over logits on the GPU.
//
// softmax: one thread block (kThreads) per row, three passes over the row: the max (strided,
// then a fixed-order block reduction), exp(x - max) written out while summing, then each
// element divided by the sum, as the CPU twin does. Traffic: logits read twice, probs written
// twice and read once (the re-reads mostly from L2 for vocab-sized rows). A row of all -inf gives NaN and
// a NaN logit poisons its row, as in torch. probs may alias logits: each element is touched by
// one thread only, read before written.
//
// argmax: one thread block per row; each thread keeps the best (value, index) of its strided
// elements, then warps and the block combine them. NaN counts as larger than any number, and
// ties (NaN with NaN too) go to the lowest index, which is torch.argmax's answer.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) softmax_kernel(const float* logits, float* probs, int64_t vocab) {
  __shared__ float scratch[kThreads / 32];
  const float* in = logits + int64_t{blockIdx.x} * vocab;
  float* p = probs + int64_t{blockIdx.x} * vocab;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, in[i]);
  m = detail::block_max<kThreads>(m, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float e = expf(in[i] - m);
    p[i] = e;
    sum += e;
  }
  sum = detail::block_sum<kThreads>(sum, scratch);
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) p[i] = p[i] / sum;
}

// The better of two (value, index) candidates: NaN beats numbers, then larger value, then the
// lower index. An empty candidate has index INT64_MAX and loses to any real one.
__device__ __forceinline__ bool better(float av, int64_t ai, float bv, int64_t bi) {
  if (bi == INT64_MAX) return ai != INT64_MAX;
  if (ai == INT64_MAX) return false;
  const bool an = isnan(av);
  const bool bn = isnan(bv);
  if (an != bn) return an;
  if (!an && av != bv) return av > bv;
  return ai < bi;
}

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ logits, int64_t vocab, int32_t* __restrict__ out) {
  __shared__ float best_v_s[kThreads / 32];
  __shared__ int64_t best_i_s[kThreads / 32];
  const float* in = logits + int64_t{blockIdx.x} * vocab;
  float best_v = 0.0f;
  int64_t best_i = INT64_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = in[i];
    if (better(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best_v, offset);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, best_i, offset);
    if (better(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  if (threadIdx.x % 32 == 0) {
    best_v_s[threadIdx.x / 32] = best_v;
    best_i_s[threadIdx.x / 32] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      if (better(best_v_s[w], best_i_s[w], best_v, best_i)) {
        best_v = best_v_s[w];
        best_i = best_i_s[w];
      }
    }
    out[blockIdx.x] = static_cast<int32_t>(best_i);
  }
}

}  // namespace

Status softmax(const CudaContext& ctx, const float* logits, float* probs, int64_t rows, int64_t vocab) {
  constexpr const char* kOp = "softmax";
  HOTSWAP_RETURN_IF_ERROR(check_softmax_args(kOp, logits, probs, rows, vocab));
  if (rows == 0) return Status::ok_status();
  // Rows run in separate thread blocks, so probs overlapping another row of logits would race.
  if (logits != probs && detail::overlaps(logits, rows * vocab * 4, probs, rows * vocab * 4)) {
    return detail::invalid(kOp, "probs partially overlaps logits (it may alias logits exactly, or not overlap)");
  }
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, rows, INT32_MAX, "rows"));
  softmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, detail::stream_of(ctx)>>>(logits, probs, vocab);
  return detail::launch_status("softmax kernel launch");
}

Status argmax(const CudaContext& ctx, const float* logits, int64_t rows, int64_t vocab, int32_t* out) {
  constexpr const char* kOp = "argmax";
  HOTSWAP_RETURN_IF_ERROR(check_argmax_args(kOp, logits, rows, vocab, out));
  if (rows == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, rows, INT32_MAX, "rows"));
  argmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, detail::stream_of(ctx)>>>(logits, vocab, out);
  return detail::launch_status("argmax kernel launch");
}

}  // namespace hotswap::kernels::cuda
