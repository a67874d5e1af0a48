// HTTP helpers on cpprestsdk shared by the agent, the operator and the tools: JSON replies,
// reading a body, bearer tokens compared in constant time.
#pragma once

#include <cpprest/http_listener.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <memory>
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

// Opens a listener on url that hands every request to handle(); an exception escaping handle()
// goes to on_exception(request, what) instead (which replies 500 in the server's own error
// shape). kUnavailable when the address cannot be listened on.
StatusOr<std::unique_ptr<Listener>> open_listener(const std::string& url, std::function<void(http_request)> handle,
                                                  std::function<void(http_request, const std::string&)> on_exception);

// A free TCP port on 127.0.0.1 (bound and released; for tests and defaults).
StatusOr<int> pick_free_port();

}  // namespace hotswap::http
