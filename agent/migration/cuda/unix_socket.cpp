#include "agent/migration/cuda/unix_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

namespace hotswap::migration {
namespace {

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

bool is_abstract(const std::string& name) {
  return !name.empty() && name[0] == '@';
}

// The address of a checked name, and its length for bind() and connect().
socklen_t make_address(const std::string& name, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, name.data(), name.size());
  if (is_abstract(name)) addr->sun_path[0] = '\0';  // the abstract namespace: no terminating NUL counts
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (is_abstract(name) ? 0 : 1));
}

StatusOr<UniqueFd> new_socket(const std::string& what) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return unavailable(what + ": socket(): " + errno_text(errno));
  return UniqueFd(fd);
}

// A path where a socket of a dead listener is left: nobody accepts on it.
bool is_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  const socklen_t len = make_address(path, &addr);
  const bool refused = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

}  // namespace

Status check_unix_socket_name(const std::string& name) {
  if (name.empty()) return invalid_argument("empty Unix socket name: give an absolute path or @name");
  if (name.find('\0') != std::string::npos) {
    return invalid_argument("Unix socket name '" + name + "' contains a NUL byte");
  }
  if (name.size() > kMaxUnixSocketNameBytes) {
    return invalid_argument("Unix socket name '" + name + "' is " + std::to_string(name.size()) +
                            " bytes, over the limit of " + std::to_string(kMaxUnixSocketNameBytes));
  }
  if (is_abstract(name)) {
    if (name.size() < 2) return invalid_argument("Unix socket name '@' needs a name after the '@'");
    return Status::ok_status();
  }
  if (name[0] != '/') {
    return invalid_argument("Unix socket name '" + name + "' is neither an absolute path nor an @abstract name");
  }
  if (name.back() == '/') return invalid_argument("Unix socket path '" + name + "' names a directory");
  return Status::ok_status();
}

StatusOr<UniqueFd> listen_unix_socket(const std::string& name, int backlog) {
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(name));
  const std::string what = "listen on Unix socket " + name;
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
  sockaddr_un addr{};
  const socklen_t len = make_address(name, &addr);
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    if (errno != EADDRINUSE || is_abstract(name) || !is_stale_socket(name)) {
      return unavailable(what + ": bind(): " + errno_text(errno));
    }
    (void)::unlink(name.c_str());  // a dead listener's socket file
    if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
      return unavailable(what + ": bind() after removing a stale socket file: " + errno_text(errno));
    }
  }
  if (::listen(sock.get(), backlog) != 0) {
    const int err = errno;
    remove_unix_socket_name(name);
    return unavailable(what + ": listen(): " + errno_text(err));
  }
  return sock;
}

StatusOr<UniqueFd> accept_unix_socket(int listen_fd, Deadline deadline, const std::string& name) {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return unavailable("accept() on Unix socket " + name + ": " + errno_text(errno));
    }
    pollfd p{listen_fd, POLLIN, 0};
    const int r = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno != EINTR) return unavailable("poll() on Unix socket " + name + ": " + errno_text(errno));
    if (r == 0 && Clock::now() >= deadline) {
      return unavailable("timed out waiting for a migration source to connect to Unix socket " + name);
    }
  }
}

StatusOr<UniqueFd> connect_unix_socket(const std::string& name, Deadline deadline) {
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(name));
  const std::string what = "connect to Unix socket " + name;
  sockaddr_un addr{};
  const socklen_t len = make_address(name, &addr);
  for (;;) {
    HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) return sock;
    const int err = errno;
    // A Unix socket connects at once or not at all; EAGAIN is a full backlog, worth a retry.
    if (err != EAGAIN && err != EINTR) return unavailable(what + ": " + errno_text(err));
    if (Clock::now() >= deadline) return unavailable(what + ": timed out (the listener's backlog stayed full)");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void remove_unix_socket_name(const std::string& name) {
  if (!name.empty() && !is_abstract(name)) (void)::unlink(name.c_str());
}

}  // namespace hotswap::migration
