// Turning the CUDA runtime's error codes into Status values, and asking whether there is a GPU.
//
// Header without CUDA includes (error codes travel as int), so host code that only needs to
// know "is there a device" or to wrap an error does not need the CUDA toolkit's headers.
#pragma once

#include "common/status.h"

namespace hotswap::kernels::cuda {

// Number of CUDA devices this process can use; 0 when there is no driver, no device, or the
// query fails for any other reason. Never throws. (Without a usable driver the runtime keeps
// reporting its initialisation error from cudaGetLastError; that is not this call's doing.)
int device_count();

// ok for cudaSuccess (0). Otherwise a Status "what: cudaErrorX: description": out of memory is
// resource_exhausted, a missing or too-old driver or no device is unavailable, an invalid
// launch configuration or value is invalid_argument, anything else is internal.
Status check_cuda(int cuda_error, const char* what);

}  // namespace hotswap::kernels::cuda

// Early return on a CUDA error, in functions that return Status.
#define HOTSWAP_RETURN_IF_CUDA_ERROR(expr, what)                                      \
  do {                                                                                \
    const int _cuda_err = static_cast<int>(expr);                                     \
    if (_cuda_err != 0) return ::hotswap::kernels::cuda::check_cuda(_cuda_err, what); \
  } while (0)
