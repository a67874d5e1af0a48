// HTTP helpers on cpprestsdk shared by the agent, the operator and the tools: listeners that
// read bounded bodies, JSON replies, bearer tokens compared in constant time.
#pragma once

#include <cpprest/http_listener.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/status.h"

namespace hotswap::http {

using web::http::http_request;
using web::http::status_code;

// Replies with a JSON body (Content-Type: application/json). Never throws; the returned task
// reports a client gone away.
pplx::task<void> reply_json(const http_request& request, status_code status, const nlohmann::json& body);

// The token of an "Authorization: Bearer <token>" header, or empty.
std::string bearer_token(const http_request& request);

// Equality whose time depends only on the lengths, not on where the strings differ.
bool constant_time_equals(const std::string& a, const std::string& b);

using Listener = web::http::experimental::listener::http_listener;

// Makes sure cpprest's process-wide listener runtime outlives every listener (see http.cpp: it
// is otherwise torn down when the last listener closes, racing its connections' handlers).
// open_listener calls it; code that opens an http_listener itself calls it first.
void keep_listener_runtime_alive();

// What a listener reads of a request body before its handler runs (see open_listener).
inline constexpr size_t kDefaultMaxBodyBytes = 1 << 20;

// The JSON body of a reply the listener makes itself, in the server's own error shape:
// 413 for a body over the cap, 400 for a body that could not be read, 500 for an exception
// out of the handler. message says what was wrong.
using ErrorBody = std::function<nlohmann::json(const http_request&, int http_status, const std::string& message)>;

// Opens a listener on url that reads each request's body (with Content-Length or chunked), at
// most max_body_bytes of it, and then hands the request and the body to handle(). A body over
// the cap is refused with 413 and "Connection: close" as soon as the cap is passed, or at once
// for a Content-Length over it, and the rest is not read: a client cannot make a server hold
// more than the cap per request. kUnavailable when the address cannot be listened on.
StatusOr<std::unique_ptr<Listener>> open_listener(const std::string& url,
                                                  std::function<void(http_request, std::string body)> handle,
                                                  ErrorBody error_body, size_t max_body_bytes = kDefaultMaxBodyBytes);

// Reads request's body, at most max_bytes of it. Past the cap it stops the listener reading
// the rest and fails with a BodyTooLarge; a body that cannot be read (client gone, bad
// chunking) fails with the listener's exception. For servers that open their listeners
// themselves; open_listener calls it.
struct BodyTooLarge : std::runtime_error {
  explicit BodyTooLarge(size_t max_bytes);
};
pplx::task<std::string> read_body(http_request request, size_t max_bytes);

// cpprest runs every listener's and every client's handlers on one process-wide thread pool,
// 40 threads unless told otherwise. Each handler it posts wakes an idle thread, so the more
// threads wait, the more context switches a stream of small writes costs: at 16 streams on a
// 2-core machine, 40 threads made ~330k switches in a 12 s run against ~55k with 4, and the
// engine's forward passes lost 10-15% to them (docs/benchmarks.md). Four are plenty for a
// replica's connections; the handlers are short, and the longest (/control/v1/status) waits
// at most one engine step. Two is the least: with one, a handler waiting on the engine holds
// up every connection.
inline constexpr int kDefaultIoThreads = 4;
inline constexpr int kMaxIoThreads = 256;

// Sizes that pool (flag: the name of the option, for the error). Must run before the process
// first uses cpprest, and after any signal mask its threads should inherit: the pool starts
// its threads here. Errors: n outside 2..256, or the pool already running.
Status set_io_threads(int64_t n, const std::string& flag = "--io-threads");

// A free TCP port on 127.0.0.1 (bound and released; for tests and defaults).
StatusOr<int> pick_free_port();

}  // namespace hotswap::http
