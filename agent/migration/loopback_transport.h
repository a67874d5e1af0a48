// The loopback transport: a connected sender and receiver in one process, for tests of a
// migration without sockets. It runs the same chunk stream protocol as tcp (chunk_stream.h) over
// an in-memory byte pipe with bounded buffers, so it has the same semantics: pipelining, the
// resend window, acknowledgements, go-back-N, replies, aborts, timeouts, a closed peer.
//
// Fault injection for tests goes in SenderOptions::fault: flip a byte at a stream offset once
// (the receiver asks for the chunk again), or drop the connection after some bytes.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include "agent/migration/byte_link.h"
#include "agent/migration/transport.h"

namespace hotswap::migration {

// Bytes each direction of the pipe holds before a send waits (a socket buffer's role).
inline constexpr size_t kLoopbackBufferBytes = 4u << 20;

struct LoopbackTransport {
  std::unique_ptr<ChunkSender> sender;
  std::unique_ptr<ChunkReceiver> receiver;
};

LoopbackTransport make_loopback_transport(SenderOptions sender_options = {}, ReceiverOptions receiver_options = {},
                                          size_t buffer_bytes = kLoopbackBufferBytes);

// The two connected ends of the in-memory pipe (for tests of the protocol on raw bytes).
std::pair<std::unique_ptr<ByteLink>, std::unique_ptr<ByteLink>> make_loopback_link_pair(
    size_t buffer_bytes = kLoopbackBufferBytes);

}  // namespace hotswap::migration
