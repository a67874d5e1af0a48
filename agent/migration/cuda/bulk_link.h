// BulkLink: the ByteLink of the GPU transports. The source's bytes move through a bulk mover (a
// ring in the target's device memory opened over CUDA IPC; NCCL send/recv), and a stream socket
// beside it (Unix for cuda-ipc, TCP for nccl) carries everything else: flow-control credits, the
// target's own bytes (the chunk stream's ACK, RESEND, REPLY and ABORT messages) and the end of
// the connection. The chunk stream protocol (chunk_stream.h) runs on top unchanged; the
// framing, credits, deadlines, interrupt() and close detection live here once, for both movers,
// and are tested with host-memory movers on machines without a GPU.
//
// The ends are not symmetric: the source end's send() goes through the mover and its receive()
// reads the socket; the target end's send() writes the socket and its receive() reads the mover.
//
// Socket frames: 16 bytes, little-endian: magic "HSBK", u16 type, u16 0, u64 value.
//   DATA   source → target  `value` more stream bytes: in the mover already (cuda-ipc), or
//                           about to be sent as one piece that the target receives whole (nccl)
//   CREDIT target → source  `value` bytes were taken out: the source may move that many more
//   BYTES  target → source  `value` payload bytes follow (at most kMaxBulkBytesFrame)
// The source starts with window_bytes() of credit; announcing more than that unread, or a CREDIT
// for more than was announced, is a protocol error that fails the link. The socket's EOF is the
// end: the target reads what was announced, then EOF.
//
// Threads: each end has a reader thread that takes the socket's frames and only records them
// (credit, announced pieces, the target's bytes, EOF); send() and receive() wait for those under
// a lock with their deadlines. The mover is called from send() (source) or receive() (target),
// one call at a time, plus close() from the thread that sees the end.
//
// Ending: the source closes its mover (for cuda-ipc: cudaIpcCloseMemHandle, after its last copy)
// before it shuts its socket down, whether it ends first or sees the target's EOF. The target's
// destructor shuts its side down and waits up to release_grace for the source's EOF before the
// mover (the ring) is freed, so the target never frees memory that the source still maps.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "common/status.h"

namespace hotswap::migration {

inline constexpr char kBulkFrameMagic[4] = {'H', 'S', 'B', 'K'};
inline constexpr size_t kBulkFrameBytes = 16;
inline constexpr size_t kMaxBulkBytesFrame = 1u << 20;
// The target's bytes the source end holds unread before its reader thread stops reading.
inline constexpr size_t kMaxBulkInboundBytes = 8u << 20;

enum class BulkFrameType : uint16_t { kData = 1, kCredit = 2, kBytes = 3 };

struct BulkFrame {
  BulkFrameType type = BulkFrameType::kData;
  uint64_t value = 0;
};

std::array<uint8_t, kBulkFrameBytes> encode_bulk_frame(const BulkFrame& frame);
// Checks magic, type and the BYTES limit.
StatusOr<BulkFrame> decode_bulk_frame(const uint8_t* bytes);

// Asked by a mover between polls while it waits on a device operation; a non-OK Status stops the
// wait with that Status (interrupt(), shutdown(), a peer gone for longer than the grace).
using BulkCancel = std::function<Status()>;

// The source's mover. Pointers given to write() may be host or device memory (the movers copy
// with cudaMemcpyDefault), so a caller that holds its bytes on the GPU moves them device to
// device; today the chunk stream hands host bytes from its resend window.
class BulkWriter {
 public:
  virtual ~BulkWriter() = default;
  // Bytes the target can hold unread: the source's first credit.
  virtual uint64_t window_bytes() const = 0;
  // The most bytes one write() may move starting at stream offset `offset` (> 0).
  virtual size_t max_piece_bytes(uint64_t offset) const = 0;
  // True: DATA goes out before write() (the target must post a matching receive for the write
  // to finish, as with NCCL). False: after write() has finished (the bytes are in the ring).
  virtual bool announce_before_write() const = 0;
  // Moves src[0, n) as stream bytes [offset, offset + n); n <= max_piece_bytes(offset) and within
  // the credit. Returns when the bytes have left src (src may be reused).
  virtual Status write(uint64_t offset, const void* src, size_t n, Deadline deadline, const BulkCancel& cancel) = 0;
  // No write() after this; releases what maps the target's memory. Idempotent.
  virtual void close() = 0;
};

// The target's mover.
class BulkReader {
 public:
  virtual ~BulkReader() = default;
  virtual uint64_t window_bytes() const = 0;
  // Copies stream bytes [offset, offset + k) into dst, 1 <= k <= n, where [offset, piece_end) is
  // what is left of the piece the source announced (a piece starts where the last one ended;
  // n <= piece_end - offset). Returns k, or 0 when the deadline passed first: then the next
  // call has the same offset, and a device operation already started carries on.
  virtual StatusOr<size_t> read(uint64_t offset, uint64_t piece_end, void* dst, size_t n, Deadline deadline,
                                const BulkCancel& cancel) = 0;
};

struct BulkLinkOptions {
  // The target's destructor waits this long for the source's EOF (its release of the mover).
  std::chrono::milliseconds release_grace{2000};
  // A target waiting on a piece in flight gives up this long after the source's EOF.
  std::chrono::milliseconds peer_gone_grace{2000};
};

// The ends over a connected, non-blocking stream socket (handshake done). `peer` names the other
// end in messages ("cuda-ipc:/run/hotswap/m.sock", "nccl://10.0.0.7:41234").
StatusOr<std::unique_ptr<ByteLink>> make_bulk_source_link(UniqueFd socket, std::unique_ptr<BulkWriter> writer,
                                                          std::string peer);
StatusOr<std::unique_ptr<ByteLink>> make_bulk_target_link(UniqueFd socket, std::unique_ptr<BulkReader> reader,
                                                          std::string peer, BulkLinkOptions options = {});

// Handshake helpers (the transports' hellos, before the link exists).

// Reads exactly n bytes; kUnavailable naming `what` when the peer closes first or the deadline
// passes.
Status receive_exactly(int fd, uint8_t* data, size_t n, Deadline deadline, const std::string& peer,
                       const std::string& what);

// A status in a handshake, so that a peer that fails says why: 4-byte magic, u16 version,
// u16 code (0 OK, else a StatusCode), u32 length (at most kMaxHandshakeStatusText), the text.
inline constexpr size_t kHandshakeStatusHeaderBytes = 12;
inline constexpr size_t kMaxHandshakeStatusText = 4096;
Status send_handshake_status(int fd, const char (&magic)[4], uint16_t version, const Status& status, Deadline deadline,
                             const std::string& peer);
// Reads one; *peer_status gets the peer's Status (its code and text). The return value is the
// failure to read one (closed, timed out, not this magic or version).
Status receive_handshake_status(int fd, const char (&magic)[4], uint16_t version, Deadline deadline,
                                const std::string& peer, const std::string& what, Status* peer_status);

}  // namespace hotswap::migration
