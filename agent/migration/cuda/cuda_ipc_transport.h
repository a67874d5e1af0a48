// The cuda-ipc transport: the chunk stream protocol (transport.h) between two agents on one node,
// both with a GPU. The target allocates a ring buffer in its GPU's memory (cudaMalloc) and
// exports it (cudaIpcGetMemHandle); the source opens it (cudaIpcOpenMemHandle) and copies the
// stream's bytes into it; the target copies them out. A Unix domain socket beside the ring is the
// control channel (bulk_link.h): the handshake with the memory handle, flow control (DATA: bytes
// ready in the ring, CREDIT: bytes taken out), the target's ACK/RESEND/REPLY/ABORT messages, and
// the end of the connection (EOF, also when a process dies, so a vanished peer is seen at once).
//
// Synchronisation is a counter scheme over the socket, no IPC events: the source announces bytes
// only after its copy into the ring has completed (cudaStreamSynchronize), and the target credits
// them back only after its copy out has completed, so no byte is overwritten before it is read.
// A copy in progress is waited for to its end (it takes the copy's time); the deadlines bound
// every wait on the peer (credit, data, the handshake), and interrupt() wakes them.
//
// Device memory: the copies use cudaMemcpyDefault, so a pointer handed to the link may be host
// memory or device memory on a GPU this process can address. Today the chunk stream's resend
// window is host memory (host → ring → host). A later GPU KV pool that hands its blocks' device
// pointers to a BulkWriter gets device-to-device copies into the ring, and a target that reads
// into its pool gets device-to-device copies out, with no host staging and no change here.
//
// Handshake on the socket, little-endian, target first:
//   hello  (target → source, kCudaIpcHelloBytes): magic "HSCI", u16 version 1, u16 0,
//          i32 target device, u32 0, u64 ring bytes, 16 bytes PCI bus id (text, NUL-padded),
//          64 bytes cudaIpcMemHandle_t
//   answer (source → target): a handshake status (bulk_link.h) with magic "HSCA": OK, or why the
//          source could not open the ring ("cudaIpcOpenMemHandle: cudaErrorMapBufferObjectFailed")
//
// Limits: cudaIpcOpenMemHandle refuses memory exported by its own process, so the two ends are
// always two processes. Across containers the two must share the IPC and PID namespaces
// (hostIPC, or one Pod), and the socket a path on a shared volume. Threads: as ByteLink and the
// chunk stream say; every CUDA call first selects this end's device on the calling thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "agent/migration/transport.h"
#include "common/status.h"

namespace hotswap::migration {

inline constexpr uint64_t kMinCudaIpcRingBytes = 64u << 10;
inline constexpr uint64_t kMaxCudaIpcRingBytes = 16ull << 30;
inline constexpr size_t kCudaIpcHelloBytes = 104;

struct CudaIpcOptions {
  int device = 0;                     // this end's GPU, as a CUDA device ordinal
  uint64_t ring_bytes = 64ull << 20;  // target: the ring's size, in this GPU's memory, per connection
  // Target: how long destroying a connection waits for the source to let go of the ring.
  std::chrono::milliseconds release_grace{2000};
};

// The hello's fields (the memory handle as its 64 opaque bytes).
struct CudaIpcHello {
  int32_t device = 0;
  uint64_t ring_bytes = 0;
  std::string pci_bus_id;  // "0000:3b:00.0", at most 15 characters
  std::array<uint8_t, 64> memory_handle{};
};

std::array<uint8_t, kCudaIpcHelloBytes> encode_cuda_ipc_hello(const CudaIpcHello& hello);
// Checks magic, version and the ring size limits.
StatusOr<CudaIpcHello> decode_cuda_ipc_hello(const uint8_t* bytes);

// The target's listening Unix socket. Threads: one owner. Destroying it removes the socket file.
class CudaIpcListener {
 public:
  // Checks the options and the GPU first: without a usable device it fails with the CUDA error
  // ("cuda-ipc target: cudaSetDevice(0): cudaErrorNoDevice: ..."), kUnavailable.
  static StatusOr<CudaIpcListener> listen(const std::string& socket_name, CudaIpcOptions options = {});

  CudaIpcListener(CudaIpcListener&& other) noexcept;
  CudaIpcListener& operator=(CudaIpcListener&& other) noexcept;
  ~CudaIpcListener();

  const std::string& socket_name() const { return name_; }
  std::string endpoint() const;  // "cuda-ipc://" + socket_name()

  // The next source, as a receiver: accepts, allocates and exports a ring, and waits for the
  // source to open it, all within timeout.
  StatusOr<std::unique_ptr<ChunkReceiver>> accept(std::chrono::milliseconds timeout, ReceiverOptions options = {});
  // The same, as the raw link (for tests of the link itself).
  StatusOr<std::unique_ptr<ByteLink>> accept_link(std::chrono::milliseconds timeout);

 private:
  CudaIpcListener(UniqueFd fd, std::string name, CudaIpcOptions options)
      : fd_(std::move(fd)), name_(std::move(name)), options_(options) {}

  UniqueFd fd_;
  std::string name_;
  CudaIpcOptions options_;
};

// Connects to a target's listener, as a sender (options.device: the source's GPU; ring_bytes is
// the target's choice and ignored here).
StatusOr<std::unique_ptr<ChunkSender>> cuda_ipc_connect(const std::string& socket_name, SenderOptions options,
                                                        std::chrono::milliseconds timeout, CudaIpcOptions gpu = {});
StatusOr<std::unique_ptr<ByteLink>> cuda_ipc_connect_link(const std::string& socket_name,
                                                          std::chrono::milliseconds timeout, CudaIpcOptions gpu = {});

}  // namespace hotswap::migration
