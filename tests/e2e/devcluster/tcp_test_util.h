// TCP helpers for the tests of the service proxy and its relay: a server on a loopback address
// that says its name and echoes, a client exchange with an optional half-close and a deadline on
// every read, and a free port on an address. Everything binds 127.0.0.0/8 only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

namespace hotswap::devcluster::testing {

// A TCP server on 127.0.1.x: says its name, then echoes what it reads until EOF (or until it reads
// "bye", when it closes first). One connection at a time, each bounded by a deadline.
class NameServer {
 public:
  NameServer(const std::string& ip, std::string name) : ip_(ip), name_(std::move(name)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~NameServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  const std::string& ip() const { return ip_; }
  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      accepted_++;
      serve(c);
      ::close(c);
    }
  }
  void serve(int c) {
    const std::string hello = name_ + "\n";
    if (::send(c, hello.data(), hello.size(), MSG_NOSIGNAL) < 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    char buf[65536];
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      if (std::string(buf, static_cast<size_t>(n)) == "bye") {
        (void)::send(c, "bye", 3, MSG_NOSIGNAL);
        return;
      }
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = ::send(c, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += w;
      }
    }
  }

  std::string ip_;
  std::string name_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

struct Exchange {
  int connect_errno = 0;  // connect() failed with this (ECONNREFUSED: nothing listens)
  bool reset = false;     // the connection was reset
  std::string data;       // what came back before EOF
  double ms = 0;
};

// Connects, sends `payload` (from a thread of its own, so that big payloads cannot deadlock),
// then either shuts down writing (half-close) or, with half_close false, keeps it open; reads
// until EOF, reset or 3 s.
inline Exchange tcp_exchange(const std::string& ip, int port, const std::string& payload = "", bool half_close = true) {
  Exchange out;
  const auto t0 = std::chrono::steady_clock::now();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    out.connect_errno = errno;
    ::close(fd);
    return out;
  }
  std::thread sender([&] {
    for (size_t off = 0; off < payload.size();) {
      const ssize_t w = ::send(fd, payload.data() + off, payload.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
  });
  const auto deadline = t0 + std::chrono::seconds(3);
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.data.append(buf, static_cast<size_t>(n));
      continue;
    }
    out.reset = n < 0;
    break;
  }
  sender.join();
  ::close(fd);
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

inline std::string name_of(const Exchange& e) {
  return e.data.substr(0, e.data.find('\n'));
}

// A free port on ip, as the kernel hands out ephemeral ones.
inline int free_port(const std::string& ip) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace hotswap::devcluster::testing
