// A small blocking HTTP/1.1 client over a POSIX socket for the server tests: it sees exactly
// what is on the wire (chunked framing, event by event) and can hang up mid-stream. Every
// read has a deadline.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace hotswap::testing {

struct HttpResponse {
  int status = 0;                              // 0: no response (connection failed or timed out)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class HttpConnection {
 public:
  explicit HttpConnection(int port, std::chrono::milliseconds timeout = std::chrono::milliseconds(30000))
      : deadline_(std::chrono::steady_clock::now() + timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) close();
  }
  ~HttpConnection() { close(); }
  bool connected() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send_request(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::map<std::string, std::string>& headers = {}) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    if (!body.empty() || method == "POST")
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    size_t sent = 0;
    while (fd_ >= 0 && sent < req.size()) {
      ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  // What flood() managed: how many body bytes the server took, and whether it hung up.
  struct Flood {
    size_t body_bytes_sent = 0;
    bool peer_closed = false;
  };

  // Sends head, then the pieces next_piece() makes until max_bytes of them are sent, reading
  // what the server answers meanwhile (read_head then reads it). Stops early when the server
  // closes the connection; a server that neither reads nor closes leaves it to the deadline.
  template <typename NextPiece>
  Flood flood(const std::string& head, NextPiece next_piece, size_t max_bytes) {
    Flood out;
    std::string pending = head;
    size_t head_left = head.size();
    while (fd_ >= 0 && std::chrono::steady_clock::now() < deadline_) {
      if (pending.empty()) {
        if (out.body_bytes_sent >= max_bytes) break;
        pending = next_piece();
      }
      pollfd p{fd_, static_cast<short>(POLLIN | POLLOUT), 0};
      if (::poll(&p, 1, 100) < 0) break;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char tmp[16384];
        ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          out.peer_closed = true;
          break;
        }
      }
      if (p.revents & POLLOUT) {
        ssize_t n = ::send(fd_, pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
          out.peer_closed = true;
          break;
        }
        if (n > 0) {
          const size_t sent = static_cast<size_t>(n);
          const size_t of_head = std::min(sent, head_left);
          head_left -= of_head;
          out.body_bytes_sent += sent - of_head;
          pending.erase(0, sent);
        }
      }
    }
    if (out.peer_closed) {  // what the server wrote before it closed is still to be read
      char tmp[16384];
      ssize_t n;
      while ((n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0) buf_.append(tmp, static_cast<size_t>(n));
    }
    return out;
  }

  // Reads the status line and headers into `out`.
  bool read_head(HttpResponse* out) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return false;
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return false;
    out->status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        out->headers[name] = value;
      }
      pos = e + 2;
    }
    chunked_ = out->headers.count("transfer-encoding") && out->headers["transfer-encoding"] == "chunked";
    if (out->headers.count("content-length")) remaining_ = std::stoll(out->headers["content-length"]);
    return true;
  }

  // The next piece of body (one chunk when chunked), or nullopt at the end or on timeout.
  std::optional<std::string> read_body_piece() {
    if (chunked_) {
      size_t e;
      while ((e = buf_.find("\r\n")) == std::string::npos)
        if (!fill()) return std::nullopt;
      size_t size = std::stoul(buf_.substr(0, e), nullptr, 16);
      while (buf_.size() < e + 2 + size + 2)
        if (!fill()) return std::nullopt;
      std::string data = buf_.substr(e + 2, size);
      buf_.erase(0, e + 2 + size + 2);
      if (size == 0) return std::nullopt;
      return data;
    }
    if (remaining_ == 0) return std::nullopt;
    if (buf_.empty() && !fill()) return std::nullopt;
    size_t take = remaining_ < 0 ? buf_.size() : std::min<size_t>(buf_.size(), static_cast<size_t>(remaining_));
    std::string data = buf_.substr(0, take);
    buf_.erase(0, take);
    if (remaining_ > 0) remaining_ -= static_cast<long long>(take);
    return data;
  }

  std::string read_all_body() {
    std::string body;
    while (auto piece = read_body_piece()) body += *piece;
    return body;
  }

 private:
  bool fill() {
    if (fd_ < 0) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::chrono::steady_clock::time_point deadline_;
  std::string buf_;
  bool chunked_ = false;
  long long remaining_ = -1;
};

inline HttpResponse http_call(int port, const std::string& method, const std::string& path,
                              const std::string& body = "", const std::map<std::string, std::string>& headers = {}) {
  HttpConnection c(port);
  HttpResponse r;
  if (!c.connected() || !c.send_request(method, path, body, headers) || !c.read_head(&r)) return r;
  r.body = c.read_all_body();
  return r;
}

// The SSE events of a body: (id, data) pairs; comment lines are skipped.
inline std::vector<std::pair<long long, std::string>> parse_sse(const std::string& body) {
  std::vector<std::pair<long long, std::string>> events;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string block = body.substr(pos, end - pos);
    pos = end + 2;
    long long id = -1;
    std::string data;
    size_t lp = 0;
    bool any = false;
    while (lp <= block.size()) {
      size_t le = block.find('\n', lp);
      if (le == std::string::npos) le = block.size();
      std::string line = block.substr(lp, le - lp);
      if (line.rfind("id: ", 0) == 0) id = std::stoll(line.substr(4)), any = true;
      if (line.rfind("data: ", 0) == 0) data = line.substr(6), any = true;
      lp = le + 1;
    }
    if (any) events.emplace_back(id, data);
  }
  return events;
}

}  // namespace hotswap::testing
