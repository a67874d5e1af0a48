// The raw link figure a transfer is judged against: plain large TCP writes and reads over
// 127.0.0.1 with the transport's socket options (tcp_socket.h), no framing, no checksums, no
// copies beyond the kernel's. A benchmark prints it beside the transport's achieved bytes/s,
// measured in the same run on the same machine; with copy_and_checksum, also the figure of
// the same pipe doing only the user-space work that a resend window and a CRC cannot avoid.
#pragma once

#include <chrono>
#include <cstddef>

#include "common/status.h"

namespace hotswap::migration {

struct LinkProbeOptions {
  size_t io_bytes = 4u << 20;                 // bytes per send() and recv() call
  std::chrono::milliseconds timeout{30'000};  // for the whole measurement
  // The least a checksummed transport that can resend must add: the writer copies each block
  // into one of four rotating buffers (a resend window) before sending it, and the reader
  // computes the CRC32C of what it reads. No framing, no acknowledgements.
  bool copy_and_checksum = false;
};

// Sends `bytes` from one socket to another over 127.0.0.1 (a reader thread drains them) and
// returns bytes / (time from the first send to the last byte read).
StatusOr<double> measure_tcp_loopback_bytes_per_s(size_t bytes, LinkProbeOptions options = {});

}  // namespace hotswap::migration
