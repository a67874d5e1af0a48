// The CUDA backend's entry points in an agent built without CUDA (HOTSWAP_CUDA=OFF): nothing to
// run on, and every call says why.
#include "agent/engine/cuda_backend.h"

namespace hotswap::engine {

bool cuda_backend_built() { return false; }

int cuda_device_count() { return 0; }

namespace {

Status not_built() {
  return unavailable(
      "this agent was built without the CUDA backend (HOTSWAP_CUDA=OFF: no nvcc at configure time); "
      "rebuild with -DHOTSWAP_CUDA=ON or use --device cpu");
}

}  // namespace

StatusOr<CudaCopyRates> measure_cuda_copy_rates(int, size_t, int) { return not_built(); }

StatusOr<std::unique_ptr<ModelExecutor>> create_cuda_executor(std::shared_ptr<const Model>,
                                                              const CudaExecutorOptions&) {
  return not_built();
}

}  // namespace hotswap::engine
