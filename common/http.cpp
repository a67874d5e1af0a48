#include "common/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace hotswap::http {

pplx::task<void> reply_json(const http_request& request, status_code status, const nlohmann::json& body) {
  web::http::http_response response(status);
  response.set_body(body.dump(), "application/json");
  try {
    return request.reply(response);
  } catch (const std::exception&) {
    return pplx::task_from_result();
  }
}

void keep_listener_runtime_alive() {
  // cpprest runs every listener of the process on one asio server, made when the first listener
  // opens and stopped and destroyed when the last one closes, even while other threads' handlers
  // of its connections still run: a rare segfault (seen in CI, in cpprest's asio server, after a
  // test's last listener closed). A listener of our own that is never closed keeps that server
  // for the life of the process. It listens on a loopback port and answers nothing but 404.
  // At exit it closes first (an atexit handler runs before cpprest's own static destructors,
  // which would otherwise wait forever on a server that still has a listener).
  static std::once_flag once;
  static Listener* keeper = nullptr;
  std::call_once(once, [] {
    for (int attempt = 0; attempt < 5 && keeper == nullptr; ++attempt) {
      auto port = pick_free_port();
      if (!port.ok()) continue;
      auto l = std::make_unique<Listener>("http://127.0.0.1:" + std::to_string(*port));
      try {
        l->open().wait();
        keeper = l.release();
      } catch (const std::exception&) {
        // Taken between the pick and the bind: another port.
      }
    }
    if (keeper == nullptr) return;
    std::atexit([] {
      try {
        keeper->close().wait();
      } catch (const std::exception&) {
      }
    });
  });
}

StatusOr<std::unique_ptr<Listener>> open_listener(const std::string& url, std::function<void(http_request)> handle,
                                                  std::function<void(http_request, const std::string&)> on_exception) {
  keep_listener_runtime_alive();
  try {
    auto listener = std::make_unique<Listener>(url);
    listener->support([handle = std::move(handle), on_exception = std::move(on_exception)](http_request req) {
      try {
        handle(req);
      } catch (const std::exception& ex) {
        on_exception(req, ex.what());
      }
    });
    listener->open().wait();
    return listener;
  } catch (const std::exception& ex) {
    return unavailable("cannot listen on " + url + ": " + ex.what());
  }
}

std::string bearer_token(const http_request& request) {
  auto it = request.headers().find(web::http::header_names::authorization);
  if (it == request.headers().end()) return "";
  const std::string& v = it->second;
  const std::string prefix = "Bearer ";
  if (v.size() <= prefix.size() || v.compare(0, prefix.size(), prefix) != 0) return "";
  return v.substr(prefix.size());
}

bool constant_time_equals(const std::string& a, const std::string& b) {
  // Compare over the longer length so the loop count does not depend on the secret's length.
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

StatusOr<int> pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return unavailable(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return unavailable(std::string("bind: ") + std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

}  // namespace hotswap::http
