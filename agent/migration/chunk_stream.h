// The chunk stream protocol (transport.h has the wire format) over any ByteLink: the one
// implementation of framing, acknowledgement, go-back-N resend, pacing, replies and aborts that
// the tcp, shm and loopback transports share.
//
// Sender: the owner's thread parses chunk boundaries from the 32-byte headers it is given (it
// checks magic, header CRC32C, length limit and consecutive sequence numbers), copies each chunk
// into the resend window, and sends it in large pieces. A whole chunk given with a PieceOwner
// (write_chunk) keeps the owner's pieces by reference instead: only checksummed, sent and resent
// from the owner's memory, and let go when the receiver acknowledges the chunk. A reader thread takes the receiver's
// control messages and only records them (acknowledged count, resend request, reply, abort);
// the owner's thread acts on them at the next chunk boundary. The window's chunks are touched by
// the owner's thread only.
//
// Receiver: no thread of its own. next() reads, feeds a SnapshotDecoder in resend mode, and
// sends RESEND and ACK messages; it watches chunk boundaries itself to spot the source's ABORT.
// A payload's bytes after its first read are received straight into the decoder's buffer.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/transport.h"

namespace hotswap::migration {

inline constexpr char kControlMagic[4] = {'H', 'S', 'C', 'M'};
inline constexpr size_t kControlHeaderBytes = 16;

enum class ControlType : uint16_t {
  kAck = 1,
  kResend = 2,
  kReply = 3,
  kAbort = 4,
};

struct ControlHeader {
  ControlType type = ControlType::kAck;
  uint16_t code = 0;   // ABORT: a StatusCode
  uint64_t value = 0;  // see transport.h
};

std::array<uint8_t, kControlHeaderBytes> encode_control_header(const ControlHeader& header);
// Checks magic and type; the caller checks value against its limits.
StatusOr<ControlHeader> decode_control_header(const uint8_t* bytes);

// The sender and receiver over `link` (link->peer() names the other end in messages).
std::unique_ptr<ChunkSender> make_stream_sender(std::unique_ptr<ByteLink> link, SenderOptions options);
std::unique_ptr<ChunkReceiver> make_stream_receiver(std::unique_ptr<ByteLink> link, ReceiverOptions options);

// Wraps a link so that its sends carry the faults (tests of the recovery paths).
std::unique_ptr<ByteLink> make_faulty_link(std::unique_ptr<ByteLink> inner, FaultInjection fault);

}  // namespace hotswap::migration
