// Test helpers for the dev cluster's API server: an in-process server, plain JSON calls over
// cpprestsdk, and a watch reader on a raw socket that decodes the chunked event stream line by
// line with a deadline on every read.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cpprest/http_client.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "e2e/devcluster/apiserver/api_server.h"

namespace hotswap::devcluster::testing {

using json = nlohmann::json;

struct Reply {
  int code = 0;
  json body;
  std::string warning;  // the Warning header, if any
};

class Client {
 public:
  explicit Client(std::string url, std::string token = "") : url_(std::move(url)), token_(std::move(token)) {}

  Reply call(const std::string& method, const std::string& path, const json& body = nullptr,
             const std::string& content_type = "application/json", const std::string& accept = "application/json") {
    web::http::client::http_client_config cfg;
    cfg.set_timeout(std::chrono::seconds(10));
    web::http::client::http_client client(url_, cfg);
    web::http::http_request req(method);
    req.set_request_uri(path);
    req.headers().add("Accept", accept);
    if (!token_.empty()) req.headers().add("Authorization", "Bearer " + token_);
    if (!body.is_null()) req.set_body(body.dump(), content_type);
    Reply r;
    try {
      auto resp = client.request(req).get();
      r.code = resp.status_code();
      auto w = resp.headers().find("Warning");
      if (w != resp.headers().end()) r.warning = w->second;
      const std::string text = resp.extract_utf8string(true).get();
      r.body = text.empty() ? json() : json::parse(text, nullptr, false);
    } catch (const std::exception& ex) {
      r.code = -1;
      r.body = ex.what();
    }
    return r;
  }
  Reply get(const std::string& path) { return call("GET", path); }
  Reply post(const std::string& path, const json& body) { return call("POST", path, body); }
  Reply put(const std::string& path, const json& body) { return call("PUT", path, body); }
  Reply merge_patch(const std::string& path, const json& body) {
    return call("PATCH", path, body, "application/merge-patch+json");
  }
  Reply del(const std::string& path, const json& body = nullptr) { return call("DELETE", path, body); }

 private:
  std::string url_;
  std::string token_;
};

// A watch: GET <path> on a socket of its own; next() returns the next event or nullopt at the
// deadline or the stream's end.
class WatchReader {
 public:
  WatchReader(int port, const std::string& path, const std::string& token = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n";
    if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
    req += "\r\n";
    (void)::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
  }
  ~WatchReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  WatchReader(const WatchReader&) = delete;
  WatchReader& operator=(const WatchReader&) = delete;

  bool connected() const { return fd_ >= 0; }
  int status() {
    read_headers(std::chrono::seconds(5));
    return status_;
  }

  std::optional<json> next(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!read_headers(timeout)) return std::nullopt;
    for (;;) {
      const auto nl = body_.find('\n');
      if (nl != std::string::npos) {
        std::string line = body_.substr(0, nl);
        body_.erase(0, nl + 1);
        if (line.empty()) continue;
        return json::parse(line, nullptr, false);
      }
      if (ended_ || !decode_chunks(deadline)) return std::nullopt;
    }
  }

  // True when the server ended the stream (the terminating chunk) within the timeout.
  bool ends_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!ended_) {
      if (!decode_chunks(deadline)) return ended_;
    }
    return true;
  }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      ended_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
  bool read_headers(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!headers_done_) {
      const auto end = raw_.find("\r\n\r\n");
      if (end != std::string::npos) {
        const std::string head = raw_.substr(0, end);
        raw_.erase(0, end + 4);
        status_ = std::atoi(head.substr(9, 3).c_str());
        chunked_ = head.find("chunked") != std::string::npos || head.find("Chunked") != std::string::npos;
        headers_done_ = true;
        break;
      }
      if (!fill(deadline)) return false;
    }
    return true;
  }
  // Moves whole chunks from raw_ to body_; false when nothing more came before the deadline.
  bool decode_chunks(std::chrono::steady_clock::time_point deadline) {
    if (!chunked_) {
      body_ += raw_;
      raw_.clear();
      return fill(deadline) || !raw_.empty();
    }
    for (;;) {
      const auto crlf = raw_.find("\r\n");
      if (crlf != std::string::npos) {
        const size_t size = std::strtoul(raw_.substr(0, crlf).c_str(), nullptr, 16);
        if (size == 0) {
          ended_ = true;
          return true;
        }
        if (raw_.size() >= crlf + 2 + size + 2) {
          body_ += raw_.substr(crlf + 2, size);
          raw_.erase(0, crlf + 2 + size + 2);
          return true;
        }
      }
      if (!fill(deadline)) return false;
    }
  }

  int fd_ = -1;
  std::string raw_;
  std::string body_;
  bool headers_done_ = false;
  bool chunked_ = false;
  bool ended_ = false;
  int status_ = 0;
};

inline int port_of(const std::string& url) { return std::atoi(url.substr(url.rfind(':') + 1).c_str()); }

inline json config_map(const std::string& name, json data = json::object(), json labels = json::object()) {
  return {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"labels", labels}}}, {"data", data}};
}

inline json pod(const std::string& name, json labels = json::object(), const std::string& node = "") {
  json p = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"labels", labels}}},
            {"spec", {{"containers", json::array({{{"name", "app"}, {"image", "local/agent"}}})}}}};
  if (!node.empty()) p["spec"]["nodeName"] = node;
  return p;
}

}  // namespace hotswap::devcluster::testing
