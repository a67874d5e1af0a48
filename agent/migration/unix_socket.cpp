#include "agent/migration/unix_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace hotswap::migration {
namespace {

// The address of a checked name, and its length for bind() and connect().
socklen_t make_address(const std::string& name, sockaddr_un* addr) {
  const bool abstract = is_abstract_unix_socket_name(name);
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, name.data(), name.size());
  if (abstract) addr->sun_path[0] = '\0';  // the abstract namespace: no terminating NUL counts
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1));
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

// Why bind() failed, in words a person can act on.
Status bind_error(const std::string& what, const std::string& name, int err, const UnixSocketStyle& style) {
  if (err == EADDRINUSE) {
    if (is_abstract_unix_socket_name(name)) return unavailable(what + ": the name is taken by another listener");
    // Not removed: a live listener's socket, another kind of file, or (see replace_stale_file) a dead one's.
    return unavailable(what + ": a file is already there" +
                       (style.replace_stale_file ? " and a listener accepts on it, or it is not a socket"
                                                 : " (a socket left by an agent that died? remove it)"));
  }
  if (err == ENOENT) {
    const std::string message = what + ": its directory does not exist";
    return style.missing_is_not_found ? not_found(message) : unavailable(message);
  }
  return unavailable(what + ": bind(): " + errno_text(err));
}

}  // namespace

bool is_abstract_unix_socket_name(const std::string& name) {
  return !name.empty() && name[0] == '@';
}

Status check_unix_socket_name(const std::string& name) {
  if (name.empty()) return invalid_argument("empty Unix socket name: give an absolute path or @name");
  if (name.find('\0') != std::string::npos) {
    return invalid_argument("Unix socket name '" + name + "' contains a NUL byte");
  }
  if (name.size() > kMaxUnixSocketNameBytes) {
    return invalid_argument("Unix socket name '" + name + "' is " + std::to_string(name.size()) +
                            " bytes, over the limit of " + std::to_string(kMaxUnixSocketNameBytes) +
                            " (a socket address holds at most " + std::to_string(kMaxUnixSocketNameBytes) +
                            " bytes): use a shorter directory");
  }
  if (is_abstract_unix_socket_name(name)) {
    if (name.size() < 2) return invalid_argument("Unix socket name '@' needs a name after the '@'");
    return Status::ok_status();
  }
  if (name[0] != '/') {
    return invalid_argument("Unix socket name '" + name + "' is neither an absolute path nor an @abstract name");
  }
  if (name.back() == '/') return invalid_argument("Unix socket path '" + name + "' names a directory");
  return Status::ok_status();
}

StatusOr<UniqueFd> listen_unix_socket(const std::string& name, const UnixSocketStyle& style, int backlog) {
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(name));
  const std::string what = "listen on " + style.noun + " " + name;
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
  sockaddr_un addr{};
  const socklen_t len = make_address(name, &addr);
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    if (err != EADDRINUSE || !style.replace_stale_file || is_abstract_unix_socket_name(name) ||
        !is_stale_socket(name)) {
      return bind_error(what, name, err, style);
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

StatusOr<UniqueFd> accept_unix_socket(int listen_fd, Deadline deadline, const std::string& name,
                                      const UnixSocketStyle& style) {
  const std::string where = style.noun + " " + name;
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return unavailable("accept() on " + where + ": " + errno_text(errno));
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(listen_fd, POLLIN, deadline, -1, where, &ready));
    if (!ready) return unavailable("timed out waiting for a migration source to connect to " + where);
  }
}

StatusOr<UniqueFd> connect_unix_socket(const std::string& name, Deadline deadline, const UnixSocketStyle& style) {
  HOTSWAP_RETURN_IF_ERROR(check_unix_socket_name(name));
  const std::string what = "connect to " + style.noun + " " + name;
  sockaddr_un addr{};
  const socklen_t len = make_address(name, &addr);
  for (;;) {
    HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, new_socket(what));
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) return sock;
    const int err = errno;
    // A Unix socket connects at once or not at all; EAGAIN is a full backlog, worth a retry.
    if (err == EAGAIN || err == EINTR) {
      if (Clock::now() >= deadline) return unavailable(what + ": timed out: the listener's backlog stays full");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    if (err == ENOENT) {
      const std::string message = what + ": no such file: no target listens there (or it has gone)";
      return style.missing_is_not_found ? not_found(message) : unavailable(message);
    }
    if (err == ECONNREFUSED) {
      return unavailable(what + ": connection refused: " +
                         (is_abstract_unix_socket_name(name) ? "nobody listens on that name"
                                                             : "the socket file is there, nobody listens"));
    }
    return unavailable(what + ": " + errno_text(err));
  }
}

void remove_unix_socket_name(const std::string& name) {
  if (!name.empty() && !is_abstract_unix_socket_name(name)) (void)::unlink(name.c_str());
}

}  // namespace hotswap::migration
