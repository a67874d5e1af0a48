// POSIX TCP sockets for the migration transport and the link probe: IPv4, non-blocking, Nagle
// off, large kernel buffers. Every wait is a poll() with a deadline, and may also watch a "wake"
// descriptor (the read end of a pipe that another thread writes to interrupt it). UniqueFd, the
// poll helpers, send_all() and receive_some() serve any non-blocking stream socket: the Unix
// sockets of unix_socket.h and the shm transport use them too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/migration/byte_link.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace hotswap::migration {

// The kernel buffers asked for on every socket (SO_SNDBUF, SO_RCVBUF), so a fast link keeps MBs
// in flight: this much, or net.core.wmem_max / rmem_max when lower. When that cap is below
// kMinTcpSocketBufferBytes the sizes are left to the kernel's autotuning (tcp_wmem, tcp_rmem),
// which a size set by hand would turn off.
inline constexpr int kTcpSocketBufferBytes = 8 << 20;
inline constexpr int kMinTcpSocketBufferBytes = 1 << 20;

using ::hotswap::UniqueFd;

// The pipe that wakes a connection's waits: interrupt() writes a byte that is never read, so
// every poll() watching `read` (wait_for_fd's wake_fd) returns now and from then on.
struct WakePipe {
  UniqueFd read;
  UniqueFd write;
  void wake() const;
};
// Errors name `peer`, the connection the pipe is for.
StatusOr<WakePipe> make_wake_pipe(const std::string& peer);

// strerror(err), for messages.
std::string errno_text(int err);
// poll()'s timeout for a deadline: -1 for Deadline::max() (no limit), else the milliseconds left,
// rounded up (0 once it has passed).
int poll_timeout_ms(Deadline deadline);
// Waits for `events` on fd, or the wake descriptor (wake_fd < 0: none; when it is readable: the
// connection to `peer` was closed locally, kUnavailable), or the deadline. OK with *ready false:
// the deadline passed; with *ready true: fd is ready, or has an error or hang-up that the next
// call on it reports.
Status wait_for_fd(int fd, short events, Deadline deadline, int wake_fd, const std::string& peer, bool* ready);

// A listening socket on host:port (port 0: the kernel picks one), SO_REUSEADDR, non-blocking.
// host is an IPv4 address ("127.0.0.1", "0.0.0.0") or a name that resolves to one.
StatusOr<UniqueFd> listen_tcp_socket(const std::string& host, uint16_t port, int backlog = 16);
// The port a socket is bound to.
StatusOr<uint16_t> tcp_local_port(int fd);
// The next connection on a listening socket, waiting until the deadline; `peer` gets "ip:port".
StatusOr<UniqueFd> accept_tcp_socket(int listen_fd, Deadline deadline, std::string* peer);
// A connected socket to host:port, waiting until the deadline.
StatusOr<UniqueFd> connect_tcp_socket(const std::string& host, uint16_t port, Deadline deadline);

// Sends all n bytes (ByteLink::send's contract). wake_fd < 0: nothing to watch.
Status send_all(int fd, const uint8_t* data, size_t n, Deadline deadline, int wake_fd, const std::string& peer);
// Receives 1..capacity bytes (ByteLink::receive's contract).
StatusOr<LinkRead> receive_some(int fd, uint8_t* data, size_t capacity, Deadline deadline, int wake_fd,
                                const std::string& peer);

}  // namespace hotswap::migration
