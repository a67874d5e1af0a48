// The nccl transport: the chunk stream protocol (transport.h) between agents on different nodes,
// both with a GPU, over NCCL send/recv between the two ranks of a 2-rank communicator (source
// rank 0, target rank 1). A TCP connection (tcp_socket.h) is the control channel: the target
// listens, the source connects, the target makes the ncclUniqueId (ncclGetUniqueId) and sends it
// in its hello, and both join the communicator. Then it is a BulkLink (bulk_link.h): for each
// piece the source announces its size on the socket (DATA), copies it into a device staging
// buffer and ncclSends it; the target, having heard DATA, ncclRecvs exactly that many bytes into
// its staging buffer and copies them out. Pieces are up to piece_bytes (the smaller of the two
// ends' settings); the chunk stream sends 1 MiB at a time.
//
// Control messages go back over the TCP socket, not NCCL: the target's messages are small and
// come at any time (an ACK whenever it is about to wait), while an NCCL receive must be posted
// beforehand with the exact size, so the source would need a thread posting receives; and the
// socket's EOF or reset is how a vanished peer is noticed, which an NCCL receive from a dead rank
// does not reliably report (it can hang). The credits and the target's ACK/RESEND/REPLY/ABORT
// travel as BulkLink frames.
//
// Deadlines: joining the communicator is non-blocking (ncclConfig_t.blocking = 0) and polled
// against the deadline, watching the socket for the peer's failure; so is every NCCL send and
// receive (the stream and ncclCommGetAsyncError). An NCCL operation that times out, fails, or
// is interrupted breaks the link and aborts the communicator (ncclCommAbort), as a failed send
// breaks a tcp link. Staging copies are waited for to their end (the copy's time).
//
// Device memory: the staging copies use cudaMemcpyDefault, so a pointer handed to the link may
// be host or device memory. A later GPU KV pool could hand device pointers to a BulkWriter that
// ncclSends straight from its blocks (and a target that receives into its pool), without staging.
//
// Handshake on the socket, little-endian:
//   hello (target → source, kNcclHelloBytes): magic "HSNC", u16 version 1, u16 0, u64 piece
//         bytes, u64 window bytes, 128 bytes ncclUniqueId
//   ready (each end → the other, once joined or failed): a handshake status (bulk_link.h) with
//         magic "HSNR"
//
// Requirements: one GPU per end and two different GPUs (NCCL refuses two ranks of a
// communicator on one device); the ranks must reach each other where NCCL looks (its bootstrap
// connects to the address in the unique id; NCCL_SOCKET_IFNAME and the other NCCL_* settings
// apply). Built only when CMake found NCCL (HOTSWAP_HAVE_NCCL); otherwise these functions return
// kUnimplemented saying so.
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

inline constexpr size_t kNcclHelloBytes = 152;
inline constexpr size_t kNcclUniqueIdBytes = 128;
inline constexpr uint64_t kMinNcclPieceBytes = 64u << 10;
inline constexpr uint64_t kMaxNcclPieceBytes = 1ull << 30;

// True when this build has the nccl transport.
bool nccl_transport_available();

struct NcclOptions {
  int device = 0;                     // this end's GPU, as a CUDA device ordinal
  uint64_t piece_bytes = 8ull << 20;  // the largest piece, and each end's staging buffer
};

struct NcclHello {
  uint64_t piece_bytes = 0;
  uint64_t window_bytes = 0;  // the target holds this much announced and unread (2 pieces)
  std::array<uint8_t, kNcclUniqueIdBytes> unique_id{};
};

std::array<uint8_t, kNcclHelloBytes> encode_nccl_hello(const NcclHello& hello);
// Checks magic, version, and the piece and window limits.
StatusOr<NcclHello> decode_nccl_hello(const uint8_t* bytes);

// The target's listening TCP socket. Threads: one owner.
class NcclListener {
 public:
  // Checks the options and the GPU first: without a usable device it fails with the CUDA error,
  // kUnavailable. Port 0: the kernel picks one (port() says which).
  static StatusOr<NcclListener> listen(const std::string& host, uint16_t port, NcclOptions options = {});

  uint16_t port() const { return port_; }

  // The next source, as a receiver: accepts, sends the unique id, joins the communicator and
  // exchanges ready, all within timeout.
  StatusOr<std::unique_ptr<ChunkReceiver>> accept(std::chrono::milliseconds timeout, ReceiverOptions options = {});
  StatusOr<std::unique_ptr<ByteLink>> accept_link(std::chrono::milliseconds timeout);

 private:
  NcclListener(UniqueFd fd, uint16_t port, NcclOptions options) : fd_(std::move(fd)), port_(port), options_(options) {}

  UniqueFd fd_;
  uint16_t port_ = 0;
  NcclOptions options_;
};

// Connects to a target's listener, joins the communicator, as a sender.
StatusOr<std::unique_ptr<ChunkSender>> nccl_connect(const std::string& host, uint16_t port, SenderOptions options,
                                                    std::chrono::milliseconds timeout, NcclOptions gpu = {});
StatusOr<std::unique_ptr<ByteLink>> nccl_connect_link(const std::string& host, uint16_t port,
                                                      std::chrono::milliseconds timeout, NcclOptions gpu = {});

}  // namespace hotswap::migration
