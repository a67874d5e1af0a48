// The raw link figure a transfer is judged against: plain large TCP writes and reads over
// 127.0.0.1 with the transport's socket options (tcp_socket.h), no framing, no checksums, no
// copies beyond the kernel's. A benchmark prints it beside the transport's achieved bytes/s,
// measured in the same run on the same machine.
#pragma once

#include <chrono>
#include <cstddef>

#include "common/status.h"

namespace hotswap::migration {

struct LinkProbeOptions {
  size_t io_bytes = 4u << 20;                 // bytes per send() and recv() call
  std::chrono::milliseconds timeout{30'000};  // for the whole measurement
};

// Sends `bytes` from one socket to another over 127.0.0.1 (a reader thread drains them) and
// returns bytes / (time from the first send to the last byte read).
StatusOr<double> measure_tcp_loopback_bytes_per_s(size_t bytes, LinkProbeOptions options = {});

}  // namespace hotswap::migration
