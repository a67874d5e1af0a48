// Choosing this end's GPU for the GPU transports, with the CUDA error as a Status. CUDA-free
// header (kernels/cuda/cuda_check.h's error mapping behind it).
#pragma once

#include <string>

#include "common/status.h"

namespace hotswap::migration {

// Makes `device` current on the calling thread. Errors (kUnavailable without a driver or a
// device, or for an ordinal that does not exist) say who asked and name the CUDA error:
// "cuda-ipc target: cudaSetDevice(0): cudaErrorNoDevice: no CUDA-capable device is detected".
Status select_gpu(int device, const std::string& who);

// The device's PCI bus id ("0000:3b:00.0"), or "GPU <n>" when the query fails; for messages.
std::string gpu_name(int device);

}  // namespace hotswap::migration
