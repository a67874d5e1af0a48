// Embedding lookup on the GPU: out[i, :] = table[ids[i], :] as f32.
//
// One thread block per token; its threads stride over dim, so each row of the table is read
// coalesced and converted once. Traffic: n * dim elements of the table (dtype) read, n * dim
// f32 written, n ids read. An id outside [0, vocab) writes a NaN row and raises kEmbeddingIds.
#include <cuda_runtime.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

template <DType T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const void* __restrict__ table, int64_t vocab, int64_t dim, const int32_t* __restrict__ ids,
                     float* __restrict__ out, unsigned int* errors) {
  const int64_t i = blockIdx.x;
  const int32_t id = ids[i];
  float* row = out + i * dim;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) detail::raise_index_error(errors, detail::kEmbeddingIds);
    for (int64_t d = threadIdx.x; d < dim; d += kThreads) row[d] = __int_as_float(0x7fc00000);
    return;
  }
  const int64_t base = int64_t{id} * dim;
  for (int64_t d = threadIdx.x; d < dim; d += kThreads) row[d] = detail::load_f32<T>(table, base + d);
}

}  // namespace

Status embedding(const CudaContext& ctx, const void* table, DType t, int64_t vocab, int64_t dim, const int32_t* ids,
                 int64_t n, float* out) {
  constexpr const char* kOp = "embedding";
  HOTSWAP_RETURN_IF_ERROR(check_embedding_args(kOp, table, t, vocab, dim, ids, n, out));
  if (n == 0) return Status::ok_status();
  // ids are device memory: the kernel checks them (kEmbeddingIds) rather than copy them here.
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, n, INT32_MAX, "n tokens"));
  constexpr int kThreads = 256;
  return detail::with_dtype(t, [&](auto tag) {
    embedding_kernel<decltype(tag)::value, kThreads><<<static_cast<unsigned>(n), kThreads, 0, detail::stream_of(ctx)>>>(
        table, vocab, dim, ids, out, ctx.index_errors);
    return detail::launch_status("embedding kernel launch");
  });
}

}  // namespace hotswap::kernels::cuda
