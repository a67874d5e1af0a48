// The nccl transport's entry points in a build without NCCL (CMake did not find nccl.h and
// libnccl): each says so.
#include "agent/migration/cuda/nccl_transport.h"

namespace hotswap::migration {
namespace {

Status no_nccl() {
  return unimplemented(
      "the nccl migration transport is not in this build: CMake found no NCCL (nccl.h, libnccl) "
      "next to the CUDA toolkit; install NCCL and reconfigure, or use tcp");
}

}  // namespace

bool nccl_transport_available() {
  return false;
}

StatusOr<NcclListener> NcclListener::listen(const std::string& host, uint16_t port, NcclOptions options) {
  return no_nccl();
}

StatusOr<std::unique_ptr<ChunkReceiver>> NcclListener::accept(std::chrono::milliseconds timeout,
                                                              ReceiverOptions options) {
  return no_nccl();
}

StatusOr<std::unique_ptr<ByteLink>> NcclListener::accept_link(std::chrono::milliseconds timeout) {
  return no_nccl();
}

StatusOr<std::unique_ptr<ChunkSender>> nccl_connect(const std::string& host, uint16_t port, SenderOptions options,
                                                    std::chrono::milliseconds timeout, NcclOptions gpu) {
  return no_nccl();
}

StatusOr<std::unique_ptr<ByteLink>> nccl_connect_link(const std::string& host, uint16_t port,
                                                      std::chrono::milliseconds timeout, NcclOptions gpu) {
  return no_nccl();
}

}  // namespace hotswap::migration
