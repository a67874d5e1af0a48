// The paged KV cache's block movement on the GPU: packing whole blocks for migration (gather),
// unpacking them into a pool (scatter), and re-laying a sequence's packed blocks for a peer
// with a different block size or dtype (convert).
//
// gather/scatter: a 2D grid, x over the n KV blocks and y over slices of each block's bytes
// (kCopyThreads * kUnitsPerThread units per slice, striding when a block needs more than the
// grid allows); each thread copies 16-byte units when the block size and both pointers
// allow it (4- or 2-byte units otherwise). Traffic: n * block_bytes read and written.
// A block id outside the pool skips that block and raises an index error. scatter: when an id
// repeats, only its last occurrence is written (each thread block scans the ids after its own,
// O(n) int reads from L2), and the repeat is reported.
//
// convert: one thread block per (dst block, layer, K/V, head) run of block_size * head_dim
// contiguous destination elements; each element is read from its source position and
// converted through f32 (copied bit for bit when the dtypes match), or zeroed past `tokens`.
// Traffic: each source element read once, each destination element written once.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kCopyThreads = 256;
constexpr int kUnitsPerThread = 4;  // per column block: kCopyThreads * kUnitsPerThread units

template <typename Unit, bool kScatter>
__global__ void __launch_bounds__(kCopyThreads)
    block_copy_kernel(const Unit* __restrict__ src, Unit* __restrict__ dst, const int32_t* __restrict__ block_ids,
                      int64_t n, int64_t n_blocks, int64_t units_per_block, unsigned int* errors) {
  const int64_t i = blockIdx.x;
  const int32_t id = block_ids[i];
  const bool reporter = threadIdx.x == 0 && blockIdx.y == 0;
  if (id < 0 || id >= n_blocks) {
    if (reporter) detail::raise_index_error(errors, kScatter ? detail::kScatterBlockIds : detail::kGatherBlockIds);
    return;
  }
  if constexpr (kScatter) {
    int repeated_later = 0;
    for (int64_t j = i + 1 + threadIdx.x; j < n; j += kCopyThreads) repeated_later |= (block_ids[j] == id);
    if (__syncthreads_or(repeated_later)) {
      if (reporter) detail::raise_index_error(errors, detail::kScatterDuplicateIds);
      return;
    }
  }
  const Unit* s = src + (kScatter ? i : int64_t{id}) * units_per_block;
  Unit* d = dst + (kScatter ? int64_t{id} : i) * units_per_block;
  const int64_t stride = int64_t{gridDim.y} * kCopyThreads;
  for (int64_t u = int64_t{blockIdx.y} * kCopyThreads + threadIdx.x; u < units_per_block; u += stride) d[u] = s[u];
}

template <typename Unit, bool kScatter>
Status launch_copy(const CudaContext& ctx, const void* src, void* dst, const int32_t* block_ids, int64_t n,
                   int64_t n_blocks, size_t block_bytes, const char* what) {
  const int64_t units = static_cast<int64_t>(block_bytes / sizeof(Unit));
  const int64_t cols = std::clamp<int64_t>(detail::ceil_div(units, kCopyThreads * kUnitsPerThread), 1, 65535);
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(cols));
  block_copy_kernel<Unit, kScatter><<<grid, kCopyThreads, 0, detail::stream_of(ctx)>>>(
      static_cast<const Unit*>(src), static_cast<Unit*>(dst), block_ids, n, n_blocks, units, ctx.index_errors);
  return detail::launch_status(what);
}

// Picks the widest copy unit that the block size and both base pointers allow.
template <bool kScatter>
Status copy_blocks(const CudaContext& ctx, const void* src, void* dst, const int32_t* block_ids, int64_t n,
                   int64_t n_blocks, size_t block_bytes, const char* what) {
  const auto misalignment = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | block_bytes;
  if ((misalignment & 15u) == 0)
    return launch_copy<uint4, kScatter>(ctx, src, dst, block_ids, n, n_blocks, block_bytes, what);
  if ((misalignment & 3u) == 0)
    return launch_copy<uint32_t, kScatter>(ctx, src, dst, block_ids, n, n_blocks, block_bytes, what);
  if ((misalignment & 1u) == 0)
    return launch_copy<uint16_t, kScatter>(ctx, src, dst, block_ids, n, n_blocks, block_bytes, what);
  return launch_copy<uint8_t, kScatter>(ctx, src, dst, block_ids, n, n_blocks, block_bytes, what);
}

template <DType S, DType D, int kThreads>
__global__ void __launch_bounds__(kThreads)
    kv_convert_kernel(const detail::DeviceKvLayout src_l, const void* __restrict__ src,
                      const detail::DeviceKvLayout dst_l, void* __restrict__ dst, int64_t tokens) {
  int64_t r = blockIdx.x;
  const int head = static_cast<int>(r % dst_l.n_kv_heads);
  r /= dst_l.n_kv_heads;
  const int kv = static_cast<int>(r % 2);
  r /= 2;
  const int layer = static_cast<int>(r % dst_l.n_layers);
  const int64_t b = r / dst_l.n_layers;
  const int head_dim = dst_l.head_dim;
  const int64_t dst_base = dst_l.index(b, layer, kv, head, 0);
  const int64_t run = int64_t{dst_l.block_size} * head_dim;
  using DstT = typename detail::Storage<D>::type;
  using SrcT = typename detail::Storage<S>::type;
  for (int64_t e = threadIdx.x; e < run; e += kThreads) {
    const int64_t pos = b * dst_l.block_size + e / head_dim;
    const int d = static_cast<int>(e % head_dim);
    if (pos >= tokens) {
      static_cast<DstT*>(dst)[dst_base + e] = DstT{0};  // all-zero bits are +0.0 in every dtype
      continue;
    }
    const int64_t s =
        src_l.index(pos / src_l.block_size, layer, kv, head, static_cast<int>(pos % src_l.block_size)) + d;
    if constexpr (S == D) {
      static_cast<DstT*>(dst)[dst_base + e] = static_cast<const SrcT*>(src)[s];
    } else {
      detail::store_f32<D>(dst, dst_base + e, detail::load_f32<S>(src, s));
    }
  }
}

// After the shared argument check, for n > 0 blocks: the copy kernel reads and writes through
// __restrict__ pointers, so the packed buffer must not overlap the pool, and n must fit the
// grid. The block ids are device memory: the kernel checks them rather than copy them here.
Status check_copy_launch(const char* op, const KvLayout& layout, const void* pool, int64_t n_blocks, int64_t n,
                         const void* packed, const char* packed_name) {
  const auto bytes = static_cast<int64_t>(layout.block_bytes());
  if (n_blocks > 0 && detail::overlaps(pool, n_blocks * bytes, packed, n * bytes)) {
    return detail::invalid(op, packed_name, " overlaps pool");
  }
  return detail::check_grid(op, n, INT32_MAX, "n blocks");
}

}  // namespace

Status kv_gather_blocks(const CudaContext& ctx, const KvLayout& layout, const void* pool, int64_t n_blocks,
                        const int32_t* block_ids, int64_t n, void* out) {
  constexpr const char* kOp = "kv_gather_blocks";
  HOTSWAP_RETURN_IF_ERROR(check_kv_gather_blocks_args(kOp, layout, pool, n_blocks, block_ids, n, out));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(check_copy_launch(kOp, layout, pool, n_blocks, n, out, "out"));
  return copy_blocks<false>(ctx, pool, out, block_ids, n, n_blocks, layout.block_bytes(),
                            "kv_gather_blocks kernel launch");
}

Status kv_scatter_blocks(const CudaContext& ctx, const KvLayout& layout, const void* in, const int32_t* block_ids,
                         int64_t n, void* pool, int64_t n_blocks) {
  constexpr const char* kOp = "kv_scatter_blocks";
  HOTSWAP_RETURN_IF_ERROR(check_kv_scatter_blocks_args(kOp, layout, in, block_ids, n, pool, n_blocks));
  if (n == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_ERROR(check_copy_launch(kOp, layout, pool, n_blocks, n, in, "in"));
  return copy_blocks<true>(ctx, in, pool, block_ids, n, n_blocks, layout.block_bytes(),
                           "kv_scatter_blocks kernel launch");
}

Status kv_convert(const CudaContext& ctx, const KvLayout& src_layout, const void* src, const KvLayout& dst_layout,
                  void* dst, int64_t tokens) {
  constexpr const char* kOp = "kv_convert";
  HOTSWAP_RETURN_IF_ERROR(check_kv_convert_args(kOp, src_layout, src, dst_layout, dst, tokens));
  if (tokens == 0) return Status::ok_status();
  const int64_t src_blocks = src_layout.blocks_for(tokens);
  const int64_t dst_blocks = dst_layout.blocks_for(tokens);
  // The kernel reads src and writes dst through __restrict__ pointers.
  if (detail::overlaps(src, src_blocks * static_cast<int64_t>(src_layout.block_bytes()), dst,
                       dst_blocks * static_cast<int64_t>(dst_layout.block_bytes()))) {
    return detail::invalid(kOp, "dst overlaps src");
  }
  const int64_t runs = dst_blocks * dst_layout.n_layers * 2 * dst_layout.n_kv_heads;
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, runs, INT32_MAX, "dst blocks * n_layers * 2 * n_kv_heads"));

  constexpr int kThreads = 256;
  const auto sl = detail::DeviceKvLayout::from(src_layout);
  const auto dl = detail::DeviceKvLayout::from(dst_layout);
  return detail::with_dtype(src_layout.dtype, [&](auto src_tag) {
    return detail::with_dtype(dst_layout.dtype, [&](auto dst_tag) {
      kv_convert_kernel<decltype(src_tag)::value, decltype(dst_tag)::value, kThreads>
          <<<static_cast<unsigned>(runs), kThreads, 0, detail::stream_of(ctx)>>>(sl, src, dl, dst, tokens);
      return detail::launch_status("kv_convert kernel launch");
    });
  });
}

}  // namespace hotswap::kernels::cuda
