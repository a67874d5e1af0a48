// The migration transport: moves one snapshot stream (snapshot.h) from the source agent to the
// target, pipelined, and carries the target's answers back on the same connection.
//
// ChunkSender (source) takes the stream's bytes exactly as SnapshotWriter's Sink hands them out,
// or whole chunks as its ChunkSink does (snapshot_sink() adapts one to the other), sends them without a round trip per chunk, and keeps
// every chunk until the receiver acknowledges it, so that when a chunk arrives corrupt it can go
// back to it: go-back-N, chunk N and everything after it again, with the same sequence numbers.
// ChunkReceiver (target) checks the bytes with a SnapshotDecoder in resend mode, asks for corrupt
// chunks again, acknowledges the rest, hands out the valid chunks in order, and finally replies.
//
// Implementations: tcp (tcp_transport.h, across nodes), shm (shm_transport.h, same node: memfd
// shared memory passed over a Unix socket), cuda-ipc (cuda/cuda_ipc_transport.h, same node, GPU:
// a ring in the target's device memory) and nccl (cuda/nccl_transport.h, across nodes, GPU: NCCL
// send/recv), the last two built with HOTSWAP_CUDA over cuda/bulk_link.h, and an in-process
// loopback pair (loopback_transport.h, for tests of a migration without sockets). All run the
// chunk stream protocol (chunk_stream.h) over a ByteLink (byte_link.h).
//
// Wire format. Source → target: the snapshot stream's chunks back to back (docs/snapshot-format.md),
// and in place of a next chunk, at most one ABORT control message. Target → source: control
// messages only. A control message is a 16-byte little-endian header and, for REPLY and ABORT,
// `value` bytes of text:
//
//   off  0  magic "HSCM" (a chunk header starts "HSWP", so a receiver tells them apart)
//   off  4  u16 type: 1 ACK, 2 RESEND, 3 REPLY, 4 ABORT
//   off  6  u16 code: ABORT's StatusCode (1..8); 0 for the others
//   off  8  u64 value:
//             ACK     n: chunks 0..n-1 arrived valid; the source may drop them (n never decreases)
//             RESEND  n: chunk n arrived corrupt; send chunk n and every later chunk again
//             REPLY   length of the reply that follows (at most kMaxReplyBytes), sent once, after End
//             ABORT   length of the reason that follows (at most kMaxAbortReasonBytes)
//
// After the REPLY the source has the last word: when the reply said the target switched and the
// source takes the switch, it closes the connection; when it gave up on the switch first (its
// deadline passed, or it was aborted) and serves the sequences itself again, it sends ABORT. A
// target that imported drops the sequences on that ABORT only: a closed connection, a reset or
// silence keeps them (a source that died after the reply left them nowhere else).
//
// The target acknowledges every ack_every_bytes / ack_every_chunks valid chunks, at End, and
// whenever it is about to wait for more bytes, so a sender blocked on a full window always gets
// an ACK. A message that breaks these rules is a protocol error that fails the transfer.
//
// Errors are Status values: kUnavailable for a peer that went away (reset, closed, timed out;
// the message says which), the peer's own code for an ABORT ("migration target aborted the
// transfer: <reason>"), the decoder's code and message (what and where) for a corrupt or invalid
// stream, kInvalidArgument for bytes given to write() that are not snapshot chunks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agent/migration/snapshot.h"
#include "agent/migration/snapshot_decoder.h"
#include "common/status.h"

namespace hotswap::migration {

inline constexpr size_t kMaxReplyBytes = 1u << 20;
inline constexpr size_t kMaxAbortReasonBytes = 64u << 10;

// Faults a sender injects into its own outgoing bytes, for tests of the recovery paths. Offsets
// count bytes on the wire from the first byte sent (equal to stream offsets until a resend).
struct FaultInjection {
  std::optional<uint64_t> flip_byte_at;      // xor 0xff into this byte, once
  std::optional<uint64_t> drop_after_bytes;  // send this many bytes, then close the connection
};

struct SenderOptions {
  // Pacing: at most this many bytes per second on the wire, resends included; 0 is no cap.
  uint64_t bandwidth_cap_bytes_per_s = 0;
  // Sent chunks kept for resending until acknowledged. write() waits (within its timeout) before
  // starting a chunk while this many bytes are unacknowledged; one chunk larger than the window
  // still goes out once everything before it is acknowledged.
  uint64_t resend_window_bytes = 256ull << 20;
  FaultInjection fault;
};

struct ReceiverOptions {
  int max_resends = 3;                     // per chunk; a chunk corrupt more often fails the stream
  uint64_t ack_every_bytes = 1u << 20;     // acknowledge after this many bytes of valid chunks
  uint64_t ack_every_chunks = 16;          // or after this many valid chunks
  size_t receive_buffer_bytes = 4u << 20;  // one receive() takes at most this much
};

struct SenderStats {
  uint64_t bytes_written = 0;       // stream bytes taken by write(): chunk headers and payloads
  uint64_t chunks_written = 0;      // whole chunks taken
  uint64_t bytes_acknowledged = 0;  // of those, acknowledged by the receiver
  uint64_t chunks_acknowledged = 0;
  uint64_t resend_requests = 0;  // RESEND messages received
  uint64_t chunks_resent = 0;    // go-back-N: chunk N and every chunk after it, per request
  uint64_t bytes_resent = 0;
  uint64_t bytes_sent = 0;  // on the wire: bytes_written sent so far + bytes_resent
  uint64_t bytes_borrowed = 0;  // of bytes_written, sent from the writer's memory (PieceOwner), not a copy
  double wire_seconds = 0;  // from the first write() to the latest acknowledgement
  double bytes_per_s = 0;   // bytes_acknowledged / wire_seconds
};

struct ReceiverStats {
  uint64_t bytes_received = 0;   // on the wire, discarded and resent chunks included
  uint64_t chunks_received = 0;  // valid chunks decoded
  uint64_t resend_requests = 0;  // RESEND messages sent
  uint64_t acks_sent = 0;
};

// The source's end. Threads: write(), flush() and await_reply() from one thread at a time (the
// owner); abort() and stats() from any thread. Inside, one thread reads the target's messages.
// After an error the transfer is broken and every later call returns that error, except that a
// timeout in flush() or await_reply(), or in write() before it took any byte, breaks nothing.
// Destroying a sender closes the connection (an unfinished transfer reads as a closed peer).
class ChunkSender {
 public:
  virtual ~ChunkSender() = default;

  // Takes all n bytes of the snapshot stream, split anywhere, and sends them; returns once they
  // are on their way (not acknowledged). Waits while the resend window is full, and first sends
  // again what the receiver asked for.
  virtual Status write(const uint8_t* data, size_t n, std::chrono::milliseconds timeout) = 0;
  // The same as write() of one whole chunk, given as SnapshotWriter's ChunkSink gives it: the
  // header with its payload CRC32C unset, and the payload pieces. The pieces are copied into the
  // resend window and checksummed in one pass. kFailedPrecondition in the middle of a chunk;
  // kInvalidArgument (nothing taken, nothing broken) for a header that is not the next chunk's
  // or does not match the pieces' length. The pieces `owner` holds are kept by reference, not
  // copied (only checksummed), until the receiver acknowledges the chunk.
  virtual Status write_chunk(const ChunkHeader& header, std::span<const std::span<const uint8_t>> payload_pieces,
                             std::chrono::milliseconds timeout, const PieceOwner& owner = {}) = 0;
  // Waits until every chunk written so far is acknowledged, resending what the receiver asks for.
  // kFailedPrecondition in the middle of a chunk.
  virtual Status flush(std::chrono::milliseconds timeout) = 0;
  // The receiver's final message (a short JSON text such as {"switched":true}), sent after it
  // processed End; resends what the receiver asks for while waiting.
  virtual StatusOr<std::string> await_reply(std::chrono::milliseconds timeout) = 0;
  // Ends the transfer: every call, now blocked or later, returns `reason` ("transfer aborted
  // locally: ..."). The receiver gets an ABORT with reason's code and message when the stream is
  // at a chunk boundary; otherwise the connection closes and it reads a truncated stream.
  virtual void abort(const Status& reason) = 0;
  // Takes the switch the target's reply reported: closes the connection, which the target reads
  // as the source's consent; abort() from then on sends nothing. Fails with the abort's reason
  // when abort() came first: the target was told, so the source must roll back.
  virtual Status commit() = 0;
  virtual SenderStats stats() const = 0;
};

// A SnapshotWriter sink that writes whole chunks into `sender`, each call with its own timeout.
inline SnapshotWriter::ChunkSink snapshot_sink(ChunkSender& sender, std::chrono::milliseconds timeout_per_write) {
  return [&sender, timeout_per_write](const ChunkHeader& header, std::span<const std::span<const uint8_t>> pieces,
                                      const PieceOwner& owner) {
    return sender.write_chunk(header, pieces, timeout_per_write, owner);
  };
}

// What the source did with the target's reply (ChunkReceiver::await_verdict).
struct SourceVerdict {
  bool gave_up = false;  // its ABORT came after the reply: it serves the sequences itself again
  std::string detail;    // the ABORT's reason, or how the wait ended (closed, timed out, a reset)
};

// The target's end. Threads: next() and reply() from one thread at a time (the owner); abort()
// and stats() from any thread. After an error every later call returns it, except a timeout in
// next(), which breaks nothing. Destroying a receiver closes the connection.
class ChunkReceiver {
 public:
  virtual ~ChunkReceiver() = default;

  // The next valid chunk, in stream order, up to and including End; kFailedPrecondition after
  // End was handed out. A decoder error (corrupt header, a chunk corrupt too often, a broken
  // order rule) is returned as the decoder said it and sent to the source as an ABORT. The valid
  // chunks that came before a failure (a decoder error, the source's ABORT, a closed connection)
  // are handed out first, then the error; after abort() the error comes at once. A failed
  // transfer is never restored, so a caller undoes what it applied.
  virtual StatusOr<DecodedChunk> next(std::chrono::milliseconds timeout) = 0;
  // Sends the final message (at most kMaxReplyBytes), once, after End came.
  virtual Status reply(std::string_view message, std::chrono::milliseconds timeout) = 0;
  // After reply() (that went out or not): waits at most `timeout` for the source's last word
  // (see the wire format). gave_up only for the source's ABORT; anything else (its close, a
  // reset, stray bytes, the timeout, a call before End) leaves the switch standing, and detail
  // says which.
  virtual SourceVerdict await_verdict(std::chrono::milliseconds timeout) = 0;
  // Ends the transfer: the source gets an ABORT with reason's code and message; every call, now
  // blocked or later, returns "transfer aborted locally: ...".
  virtual void abort(const Status& reason) = 0;
  virtual ReceiverStats stats() const = 0;
};

}  // namespace hotswap::migration
