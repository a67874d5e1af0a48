#include "common/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pplx/threadpool.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

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

Status set_io_threads(int64_t n, const std::string& flag) {
  if (n < 2 || n > kMaxIoThreads)
    return invalid_argument(flag + " must be in 2.." + std::to_string(kMaxIoThreads) + ", got " + std::to_string(n) +
                            " (with one, a request that waits on the engine holds up every connection)");
  try {
    crossplat::threadpool::initialize_with_threads(static_cast<size_t>(n));
  } catch (const std::exception& e) {
    return failed_precondition(flag + ": cpprest's thread pool is already running (" + e.what() +
                               "); it must be sized before the first HTTP listener or client");
  }
  return Status();
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

BodyTooLarge::BodyTooLarge(size_t max_bytes)
    : std::runtime_error("the request body exceeds " + std::to_string(max_bytes) + " bytes") {}

namespace {

constexpr size_t kBodyChunkBytes = 64 << 10;

struct BodyRead {
  http_request request;
  size_t max_bytes = 0;
  std::string body;
  std::vector<uint8_t> chunk = std::vector<uint8_t>(kBodyChunkBytes);
};

// Ends the listener's read of a refused body: its next write into the body's buffer fails,
// which ends the read (and lets it send the reply, which it holds until then).
void stop_reading(const http_request& request, size_t max_bytes) {
  request.body()
      .streambuf()
      .close(std::ios::in | std::ios::out, std::make_exception_ptr(BodyTooLarge(max_bytes)))
      .then([](pplx::task<void> t) {
        try {
          t.get();
        } catch (const std::exception&) {
        }
      });
}

pplx::task<void> read_more(std::shared_ptr<BodyRead> r) {
  // One byte past the cap is enough to know the body is over it.
  const size_t want = std::min(r->chunk.size(), r->max_bytes + 1 - r->body.size());
  return r->request.body().streambuf().getn(r->chunk.data(), want).then([r](size_t n) -> pplx::task<void> {
    if (n == 0) return pplx::task_from_result();
    r->body.append(reinterpret_cast<const char*>(r->chunk.data()), n);
    if (r->body.size() > r->max_bytes) {
      stop_reading(r->request, r->max_bytes);
      throw BodyTooLarge(r->max_bytes);
    }
    return read_more(r);
  });
}

}  // namespace

pplx::task<std::string> read_body(http_request request, size_t max_bytes) {
  if (request.headers().has(web::http::header_names::content_length) &&
      request.headers().content_length() > max_bytes) {
    stop_reading(request, max_bytes);
    return pplx::task_from_exception<std::string>(BodyTooLarge(max_bytes));
  }
  auto r = std::make_shared<BodyRead>();
  r->request = std::move(request);
  r->max_bytes = max_bytes;
  return read_more(r).then([r] { return std::move(r->body); });
}

StatusOr<std::unique_ptr<Listener>> open_listener(const std::string& url,
                                                  std::function<void(http_request, std::string body)> handle,
                                                  ErrorBody error_body, size_t max_body_bytes) {
  keep_listener_runtime_alive();
  auto reply_error = [error_body](const http_request& req, int status, const std::string& message) {
    web::http::http_response response(static_cast<status_code>(status));
    response.set_body(error_body(req, status, message).dump(), "application/json");
    // The rest of a refused body is not read: the connection cannot carry another request.
    if (status == 413) response.headers().add(web::http::header_names::connection, "close");
    try {
      req.reply(response).then([](pplx::task<void> t) {
        try {
          t.get();
        } catch (const std::exception&) {
        }
      });
    } catch (const std::exception&) {
    }
  };
  try {
    auto listener = std::make_unique<Listener>(url);
    listener->support([handle = std::move(handle), reply_error, max_body_bytes](http_request req) {
      read_body(req, max_body_bytes).then([handle, reply_error, req](pplx::task<std::string> body) {
        std::string text;
        try {
          text = body.get();
        } catch (const BodyTooLarge& ex) {
          return reply_error(req, 413, ex.what());
        } catch (const std::exception& ex) {
          return reply_error(req, 400, std::string("cannot read the request body: ") + ex.what());
        }
        try {
          handle(req, std::move(text));
        } catch (const std::exception& ex) {
          reply_error(req, 500, std::string("internal error: ") + ex.what());
        }
      });
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
