#include "agent/migration/cuda/gpu_device.h"

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"

namespace hotswap::migration {

Status select_gpu(int device, const std::string& who) {
  if (device < 0) return invalid_argument(who + ": GPU " + std::to_string(device) + " is not a CUDA device ordinal");
  const std::string what = who + ": cudaSetDevice(" + std::to_string(device) + ")";
  const cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: the next call should not see it again
    return kernels::cuda::check_cuda(err, what.c_str());
  }
  return Status::ok_status();
}

std::string gpu_name(int device) {
  char id[32] = {};
  if (cudaDeviceGetPCIBusId(id, sizeof id, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "GPU " + std::to_string(device);
  }
  return id;
}

}  // namespace hotswap::migration
