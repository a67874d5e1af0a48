#include "agent/migration/tcp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

namespace hotswap::migration {
namespace {

std::string endpoint(const std::string& host, uint16_t port) {
  return host + ":" + std::to_string(port);
}

Status interrupted(const std::string& peer) {
  return unavailable("the connection to " + peer + " was closed locally");
}

// The buffer size to ask for, given the kernel's cap in `sysctl_path`; 0: leave it to the kernel.
int buffer_request(const char* sysctl_path) {
  long cap = 0;
  if (std::FILE* f = std::fopen(sysctl_path, "r")) {
    if (std::fscanf(f, "%ld", &cap) != 1) cap = 0;
    std::fclose(f);
  }
  const long request = std::min<long>(kTcpSocketBufferBytes, cap);
  return request >= kMinTcpSocketBufferBytes ? static_cast<int>(request) : 0;
}

void set_socket_options(int fd) {
  // A size set by hand turns the kernel's autotuning off, so only when the cap allows a large one.
  static const int send_buffer = buffer_request("/proc/sys/net/core/wmem_max");
  static const int receive_buffer = buffer_request("/proc/sys/net/core/rmem_max");
  const int one = 1;
  // Best effort: a kernel that refuses an option still gives a working socket.
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (send_buffer > 0) (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
  if (receive_buffer > 0) (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
}

StatusOr<UniqueFd> new_socket(const std::string& what) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unavailable(what + ": socket(): " + errno_text(errno));
  UniqueFd sock(fd);
  set_socket_options(sock.get());
  return sock;
}

StatusOr<sockaddr_in> resolve_ipv4(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1) return addr;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    return not_found("cannot resolve '" + host + "' to an IPv4 address: " + ::gai_strerror(rc));
  }
  addr.sin_addr = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
  ::freeaddrinfo(found);
  return addr;
}

std::string describe(const sockaddr_in& addr) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text);
  return endpoint(text, ntohs(addr.sin_port));
}

}  // namespace

std::string errno_text(int err) {
  return std::strerror(err);
}

int poll_timeout_ms(Deadline deadline) {
  if (deadline == Deadline::max()) return -1;
  const Deadline now = Clock::now();
  if (deadline <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

Status wait_for_fd(int fd, short events, Deadline deadline, int wake_fd, const std::string& peer, bool* ready) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const int r = ::poll(fds, wake_fd >= 0 ? 2 : 1, poll_timeout_ms(deadline));
    if (r < 0) {
      if (errno == EINTR) continue;
      return unavailable("poll() on the connection to " + peer + ": " + errno_text(errno));
    }
    if (wake_fd >= 0 && fds[1].revents != 0) return interrupted(peer);
    if (r == 0) {
      if (Clock::now() < deadline) continue;  // poll's millisecond rounding woke it early
      *ready = false;
      return Status::ok_status();
    }
    *ready = true;  // readiness, or an error or hang-up that the next call reports
    return Status::ok_status();
  }
}

void WakePipe::wake() const {
  const char byte = 1;
  while (::write(write.get(), &byte, 1) < 0 && errno == EINTR) {
  }
}

StatusOr<WakePipe> make_wake_pipe(const std::string& peer) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return unavailable("pipe2() for the connection to " + peer + ": " + errno_text(errno));
  return WakePipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

StatusOr<UniqueFd> listen_tcp_socket(const std::string& host, uint16_t port, int backlog) {
  const std::string what = "listen on " + endpoint(host, port);
  HOTSWAP_ASSIGN_OR_RETURN(sockaddr_in addr, resolve_ipv4(host, port));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
  const int one = 1;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return unavailable(what + ": SO_REUSEADDR: " + errno_text(errno));
  }
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return unavailable(what + ": bind(): " + errno_text(errno));
  }
  if (::listen(sock.get(), backlog) != 0) return unavailable(what + ": listen(): " + errno_text(errno));
  return sock;
}

StatusOr<uint16_t> tcp_local_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return unavailable(std::string("getsockname(): ") + errno_text(errno));
  }
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

StatusOr<UniqueFd> accept_tcp_socket(int listen_fd, Deadline deadline, std::string* peer) {
  for (;;) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      UniqueFd sock(fd);
      set_socket_options(sock.get());  // the buffer sizes come from the listener; Nagle is per socket
      if (peer != nullptr) *peer = describe(addr);
      return sock;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return unavailable(std::string("accept(): ") + errno_text(errno));
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(listen_fd, POLLIN, deadline, -1, "listener", &ready));
    if (!ready) return unavailable("timed out waiting for a migration source to connect");
  }
}

StatusOr<UniqueFd> connect_tcp_socket(const std::string& host, uint16_t port, Deadline deadline) {
  const std::string what = "connect to " + endpoint(host, port);
  HOTSWAP_ASSIGN_OR_RETURN(sockaddr_in addr, resolve_ipv4(host, port));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return sock;
  if (errno != EINPROGRESS && errno != EINTR) return unavailable(what + ": " + errno_text(errno));
  bool ready = false;
  HOTSWAP_RETURN_IF_ERROR(wait_for_fd(sock.get(), POLLOUT, deadline, -1, endpoint(host, port), &ready));
  if (!ready) return unavailable(what + ": timed out");
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) return unavailable(what + ": " + errno_text(err));
  return sock;
}

Status send_all(int fd, const uint8_t* data, size_t n, Deadline deadline, int wake_fd, const std::string& peer) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      data += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return unavailable("connection to " + peer + ": " + errno_text(errno));
    }
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(fd, POLLOUT, deadline, wake_fd, peer, &ready));
    if (!ready) return unavailable("timed out sending to " + peer + ": it has stopped taking bytes");
  }
  return Status::ok_status();
}

StatusOr<LinkRead> receive_some(int fd, uint8_t* data, size_t capacity, Deadline deadline, int wake_fd,
                                const std::string& peer) {
  for (;;) {
    const ssize_t r = ::recv(fd, data, capacity, MSG_DONTWAIT);
    if (r > 0) return LinkRead{static_cast<size_t>(r), false};
    if (r == 0) return LinkRead{0, true};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return unavailable("connection to " + peer + ": " + errno_text(errno));
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(fd, POLLIN, deadline, wake_fd, peer, &ready));
    if (!ready) return LinkRead{0, false};
  }
}

}  // namespace hotswap::migration
