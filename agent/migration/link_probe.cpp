#include "agent/migration/link_probe.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "agent/migration/crc32c.h"
#include "agent/migration/tcp_socket.h"

namespace hotswap::migration {

StatusOr<double> measure_tcp_loopback_bytes_per_s(size_t bytes, LinkProbeOptions options) {
  if (bytes == 0) return invalid_argument("link probe: bytes must be at least 1");
  if (options.io_bytes == 0) return invalid_argument("link probe: io_bytes must be at least 1");
  const Deadline deadline = deadline_after(options.timeout);
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd listener, listen_tcp_socket("127.0.0.1", 0));
  HOTSWAP_ASSIGN_OR_RETURN(uint16_t port, tcp_local_port(listener.get()));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd writer, connect_tcp_socket("127.0.0.1", port, deadline));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd reader, accept_tcp_socket(listener.get(), deadline, nullptr));
  const std::string peer = "127.0.0.1:" + std::to_string(port);

  Status read_status;
  Deadline last_byte;
  uint32_t crc = 0;
  std::thread drain([&] {
    std::vector<uint8_t> buffer(options.io_bytes);
    size_t left = bytes;
    while (left > 0) {
      auto r = receive_some(reader.get(), buffer.data(), std::min(left, buffer.size()), deadline, -1, peer);
      if (!r.ok()) {
        read_status = r.status();
        return;
      }
      if (r->eof || r->bytes == 0) {
        read_status = unavailable(r->eof ? "link probe: the writer closed early" : "link probe: timed out reading");
        return;
      }
      if (options.copy_and_checksum) crc = crc32c_extend(crc, buffer.data(), r->bytes);
      left -= r->bytes;
    }
    last_byte = Clock::now();
  });

  std::vector<uint8_t> block(options.io_bytes, 0x5a);
  std::vector<std::vector<uint8_t>> window;
  if (options.copy_and_checksum) window.assign(4, std::vector<uint8_t>(options.io_bytes));
  const Deadline start = Clock::now();
  Status write_status;
  for (size_t left = bytes, i = 0; left > 0 && write_status.ok(); ++i) {
    const size_t n = std::min(left, block.size());
    const uint8_t* from = block.data();
    if (options.copy_and_checksum) {
      std::vector<uint8_t>& slot = window[i % window.size()];
      std::memcpy(slot.data(), block.data(), n);
      from = slot.data();
    }
    write_status = send_all(writer.get(), from, n, deadline, -1, peer);
    left -= n;
  }
  if (!write_status.ok()) writer.reset();  // the reader sees EOF instead of waiting out the deadline
  drain.join();
  (void)crc;  // computed for its cost only
  HOTSWAP_RETURN_IF_ERROR(write_status);
  HOTSWAP_RETURN_IF_ERROR(read_status);
  const double seconds = std::chrono::duration<double>(last_byte - start).count();
  if (seconds <= 0) return internal_error("link probe: no time passed");
  return static_cast<double>(bytes) / seconds;
}

}  // namespace hotswap::migration
