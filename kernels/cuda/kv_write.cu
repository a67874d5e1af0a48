// Writing new tokens' K and V into the paged cache on the GPU, converting f32 to layout.dtype.
//
// One thread block per (token, K or V): its threads walk the token's n_kv_heads * head_dim
// values, so reads of k/v and writes into each head's slot row are coalesced. Traffic: tokens *
// 2 * n_kv_heads * head_dim f32 read and as many elements of layout.dtype written. A slot
// outside the pool is skipped and raises kKvWriteSlots.
#include <cuda_runtime.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

template <DType T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    kv_write_kernel(const detail::DeviceKvLayout layout, void* __restrict__ pool, int64_t n_slots, int layer,
                    const float* __restrict__ k, const float* __restrict__ v, const int64_t* __restrict__ slots,
                    unsigned int* errors) {
  const int64_t t = blockIdx.x;
  const int kv = static_cast<int>(blockIdx.y);
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= n_slots) {
    if (threadIdx.x == 0 && kv == 0) detail::raise_index_error(errors, detail::kKvWriteSlots);
    return;
  }
  const int64_t block = slot / layout.block_size;
  const int offset = static_cast<int>(slot % layout.block_size);
  const int row = layout.n_kv_heads * layout.head_dim;
  const float* src = (kv == 0 ? k : v) + t * row;
  for (int e = threadIdx.x; e < row; e += kThreads) {
    const int head = e / layout.head_dim;
    const int d = e % layout.head_dim;
    detail::store_f32<T>(pool, layout.index(block, layer, kv, head, offset) + d, src[e]);
  }
}

}  // namespace

Status kv_write(const CudaContext& ctx, const KvLayout& layout, void* pool, int64_t n_blocks, int layer, const float* k,
                const float* v, const int64_t* slots, int64_t tokens) {
  constexpr const char* kOp = "kv_write";
  HOTSWAP_RETURN_IF_ERROR(check_kv_write_args(kOp, layout, pool, n_blocks, layer, k, v, slots, tokens));
  if (tokens == 0) return Status::ok_status();
  // slots are device memory: the kernel checks them (kKvWriteSlots) rather than copy them here.
  const int64_t row = int64_t{layout.n_kv_heads} * layout.head_dim;
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, tokens, INT32_MAX, "tokens"));
  if (row > INT32_MAX) return detail::invalid(kOp, "n_kv_heads * head_dim = ", row, " overflows int");
  constexpr int kThreads = 128;
  const dim3 grid(static_cast<unsigned>(tokens), 2);
  const auto dl = detail::DeviceKvLayout::from(layout);
  const int64_t n_slots = n_blocks * layout.block_size;
  return detail::with_dtype(layout.dtype, [&](auto tag) {
    kv_write_kernel<decltype(tag)::value, kThreads>
        <<<grid, kThreads, 0, detail::stream_of(ctx)>>>(dl, pool, n_slots, layer, k, v, slots, ctx.index_errors);
    return detail::launch_status("kv_write kernel launch");
  });
}

}  // namespace hotswap::kernels::cuda
