// The engine's CUDA backend as the engine sees it: a ModelExecutor on one GPU, and whether this
// agent can have one. Declared in every build; an agent built without CUDA (HOTSWAP_CUDA=OFF)
// answers with an error saying so (cuda/no_cuda.cpp), one built with it runs
// cuda/cuda_executor.cpp over the kernels of kernels/cuda.
//
// The CUDA executor holds the weights, the KV pool and the scratch in device memory. The
// weights are copied once, at create, through two pinned staging buffers in turn, so reading
// the (mapped) checkpoint overlaps the copies. A forward pass uploads the batch's index arrays
// in one copy, runs the same sequence of ops as the CPU executor on the context's stream, and
// brings back only the logits rows asked for. Migration reads and writes whole KV blocks in
// host memory (ModelExecutor's contract), through a device staging buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "agent/engine/model.h"
#include "common/status.h"
#include "kernels/dtype.h"

namespace hotswap::engine {

struct CudaExecutorOptions {
  int device = 0;  // the CUDA device ordinal
  int64_t kv_blocks = 0;
  int block_size = 16;
  kernels::DType kv_dtype = kernels::DType::kF32;
  size_t staging_bytes = size_t{32} << 20;  // each of the two pinned weight-upload buffers
};

// True when this agent was built with the CUDA backend.
bool cuda_backend_built();

// GPUs this process can use: 0 without the CUDA backend, a driver or a device.
int cuda_device_count();

// The copy rates the CUDA executor's work is measured against, on `device`: device to device
// (a cudaMemcpy between two buffers of `bytes`, counting bytes read plus written) and host to
// device (from pinned memory), each the best of `reps` timed with CUDA events after a warm-up.
struct CudaCopyRates {
  double device_to_device_bytes_per_s = 0;
  double host_to_device_bytes_per_s = 0;
};
StatusOr<CudaCopyRates> measure_cuda_copy_rates(int device, size_t bytes, int reps);

// An executor on options.device. unavailable when the backend is not built or there is no such
// device; resource_exhausted when the weights, the KV pool or the scratch do not fit.
StatusOr<std::unique_ptr<ModelExecutor>> create_cuda_executor(std::shared_ptr<const Model> model,
                                                              const CudaExecutorOptions& options);

}  // namespace hotswap::engine
