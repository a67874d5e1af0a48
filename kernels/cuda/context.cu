// The CUDA context's lifecycle (stream and index-error word), device discovery, the CUDA
// error -> Status mapping, and turning the device's index-error bits into a message.
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace hotswap::kernels::cuda {

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so the next launch check does not see it
    return 0;
  }
  return n;
}

Status check_cuda(int cuda_error, const char* what) {
  const auto err = static_cast<cudaError_t>(cuda_error);
  if (err == cudaSuccess) return Status::ok_status();
  std::string msg = detail::str_cat(what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorMemoryAllocation:
      return resource_exhausted(std::move(msg));
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCudartUnloading:
      return unavailable(std::move(msg));
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer:
      return invalid_argument(std::move(msg));
    default:
      return internal_error(std::move(msg));
  }
}

StatusOr<CudaContext> create_context(int device) {
  const int n = device_count();
  if (n == 0) return unavailable("create_context: no CUDA device (cudaGetDeviceCount found none or failed)");
  if (device < 0 || device >= n) {
    return unavailable(detail::str_cat("create_context: device ", device, " does not exist (", n, " visible)"));
  }
  HOTSWAP_RETURN_IF_CUDA_ERROR(cudaSetDevice(device), "create_context: cudaSetDevice");
  CudaContext ctx;
  // Fills ctx step by step; on failure the caller frees whatever was made.
  auto build = [&ctx]() -> Status {
    cudaStream_t stream = nullptr;
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                 "create_context: cudaStreamCreateWithFlags");
    ctx.stream = stream;
    void* word = nullptr;
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMalloc(&word, sizeof(unsigned int)), "create_context: cudaMalloc(index_errors)");
    ctx.index_errors = static_cast<unsigned int*>(word);
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(word, 0, sizeof(unsigned int), stream),
                                 "create_context: cudaMemsetAsync");
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream), "create_context: cudaStreamSynchronize");
    return Status::ok_status();
  };
  const Status st = build();
  if (!st.ok()) {
    (void)destroy_context(ctx);
    return st;
  }
  return ctx;
}

Status destroy_context(CudaContext& ctx) {
  const Status synced = synchronize(ctx);
  const Status freed = ctx.index_errors == nullptr
                           ? Status::ok_status()
                           : check_cuda(cudaFree(ctx.index_errors), "destroy_context: cudaFree(index_errors)");
  ctx.index_errors = nullptr;
  const Status destroyed = ctx.stream == nullptr ? Status::ok_status()
                                                 : check_cuda(cudaStreamDestroy(detail::stream_of(ctx)),
                                                              "destroy_context: cudaStreamDestroy");
  ctx.stream = nullptr;
  if (!synced.ok()) return synced;
  if (!freed.ok()) return freed;
  return destroyed;
}

Status synchronize(const CudaContext& ctx) {
  return check_cuda(cudaStreamSynchronize(detail::stream_of(ctx)), "cudaStreamSynchronize");
}

Status take_index_errors(const CudaContext& ctx) {
  if (ctx.index_errors == nullptr) return synchronize(ctx);
  const cudaStream_t stream = detail::stream_of(ctx);
  unsigned int bits = 0;
  HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(&bits, ctx.index_errors, sizeof bits, cudaMemcpyDeviceToHost, stream),
                               "take_index_errors: cudaMemcpyAsync");
  HOTSWAP_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream), "take_index_errors: cudaStreamSynchronize");
  if (bits == 0) return Status::ok_status();
  HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(ctx.index_errors, 0, sizeof(unsigned int), stream),
                               "take_index_errors: cudaMemsetAsync");

  struct Named {
    unsigned int bit;
    const char* text;
  };
  static constexpr Named kNames[] = {
      {detail::kEmbeddingIds, "embedding: ids[i] outside [0, vocab)"},
      {detail::kRopePositions, "rope: positions[t] negative"},
      {detail::kKvWriteSlots, "kv_write: slots[t] outside the pool"},
      {detail::kAttentionTokens,
       "paged_attention: token_seq[t] or token_pos[t] negative, or token_pos[t] needs more blocks than "
       "block_table_stride"},
      {detail::kAttentionBlockTable, "paged_attention: a used block_tables entry outside the pool"},
      {detail::kGatherBlockIds, "kv_gather_blocks: block_ids[i] outside the pool"},
      {detail::kScatterBlockIds, "kv_scatter_blocks: block_ids[i] outside the pool"},
      {detail::kScatterDuplicateIds, "kv_scatter_blocks: a block id appears more than once in block_ids"},
  };
  std::string msg = "device-side index check failed: ";
  bool first = true;
  for (const Named& n : kNames) {
    if ((bits & n.bit) == 0) continue;
    if (!first) msg += "; ";
    msg += n.text;
    first = false;
  }
  return invalid_argument(std::move(msg));
}

}  // namespace hotswap::kernels::cuda
