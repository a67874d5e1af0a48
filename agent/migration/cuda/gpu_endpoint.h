// The data endpoints of the GPU transports, as a target hands them to a source (the way tcp's is
// "tcp://host:port"):
//
//   cuda-ipc:///run/hotswap/migration-1.sock   the Unix socket of a cuda-ipc target (same node)
//   cuda-ipc://@hotswap-migration-1            the same in Linux's abstract socket namespace
//   nccl://10.0.3.7:41234                      the TCP control channel of an nccl target
//
// The GPU each end uses is its own setting (CudaIpcOptions / NcclOptions::device), not part of
// the endpoint. CUDA-free: parsing works on machines without a GPU.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace hotswap::migration {

inline constexpr char kCudaIpcScheme[] = "cuda-ipc://";
inline constexpr char kNcclScheme[] = "nccl://";

// The Unix socket name in a cuda-ipc endpoint (checked as unix_socket.h's names are).
StatusOr<std::string> parse_cuda_ipc_endpoint(const std::string& endpoint);
std::string cuda_ipc_endpoint(const std::string& socket_name);

struct NcclEndpoint {
  std::string host;
  uint16_t port = 0;
};

// host:port after "nccl://": an IPv4 address or a name, and a port 1..65535.
StatusOr<NcclEndpoint> parse_nccl_endpoint(const std::string& endpoint);
std::string nccl_endpoint(const std::string& host, uint16_t port);

}  // namespace hotswap::migration
