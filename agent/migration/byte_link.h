// ByteLink: one end of a reliable, ordered, full-duplex byte pipe with deadlines (a TCP
// connection, an in-process loopback pair). The chunk stream protocol (chunk_stream.h) runs over
// it, so every transport that moves bytes shares one implementation of framing, acknowledgement
// and go-back-N resend; a transport only says how bytes move.
//
// Threads: send() and receive() may run at the same time on two threads (one of each);
// interrupt() and shutdown() may be called from any thread at any time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace hotswap::migration {

using Clock = std::chrono::steady_clock;
// Clock::time_point::max() waits until something happens (data, the peer's close, interrupt()).
using Deadline = Clock::time_point;

inline Deadline deadline_after(std::chrono::milliseconds timeout) {
  return Clock::now() + timeout;
}

struct LinkRead {
  size_t bytes = 0;  // 0 and !eof: the deadline passed first
  bool eof = false;  // the peer closed its sending side; nothing more will come
};

class ByteLink {
 public:
  virtual ~ByteLink() = default;

  // Sends all n bytes, or fails: the peer went away (kUnavailable), the deadline passed while the
  // peer did not take bytes (kUnavailable, "timed out"), or interrupt() was called. After a
  // failure an unknown prefix of the bytes went out.
  virtual Status send(const uint8_t* data, size_t n, Deadline deadline) = 0;
  // Receives 1..capacity bytes, or reports the deadline or the peer's end (LinkRead). Errors: the
  // connection was reset, or interrupt() was called.
  virtual StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) = 0;
  // Wakes every send() and receive() blocked on this end and fails them and all later ones. The
  // peer notices nothing until shutdown().
  virtual void interrupt() = 0;
  // Closes both directions: the peer reads what was sent, then EOF, and its sends fail.
  virtual void shutdown() = 0;
  // Who is at the other end, for messages: "127.0.0.1:41234", "loopback".
  virtual std::string peer() const = 0;
};

}  // namespace hotswap::migration
