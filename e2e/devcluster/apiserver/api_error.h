// The API server's errors as Kubernetes reports them: an HTTP code, a StatusReason
// ("NotFound", "AlreadyExists", "Conflict", "Invalid", "Gone", ...) and a message, sent as a
// meta/v1 Status object that kubectl and client libraries read (and print: "Error from server
// (NotFound): pods \"x\" not found"). ApiResult<T> is a value or one of these.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "common/status.h"

namespace hotswap::devcluster {

struct ApiError {
  int code = 500;
  std::string reason = "InternalError";
  std::string message;
  nlohmann::json details;  // meta/v1 StatusDetails (name, group, kind, causes), or null

  // The meta/v1 Status object.
  nlohmann::json to_status_json() const {
    nlohmann::json j = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", nlohmann::json::object()},
                        {"status", "Failure"}, {"message", message}, {"reason", reason}, {"code", code}};
    if (!details.is_null()) j["details"] = details;
    return j;
  }
};

inline ApiError api_error(int code, std::string reason, std::string message, nlohmann::json details = nullptr) {
  return ApiError{code, std::move(reason), std::move(message), std::move(details)};
}
inline ApiError bad_request(std::string message) { return api_error(400, "BadRequest", std::move(message)); }
// name: "pods \"x\"" style is built by the caller.
inline ApiError not_found_error(std::string message) { return api_error(404, "NotFound", std::move(message)); }
inline ApiError conflict_error(std::string message) { return api_error(409, "Conflict", std::move(message)); }
inline ApiError already_exists_error(std::string message) { return api_error(409, "AlreadyExists", std::move(message)); }
inline ApiError gone_error(std::string message) { return api_error(410, "Expired", std::move(message)); }
inline ApiError invalid_error(std::string message, nlohmann::json details = nullptr) {
  return api_error(422, "Invalid", std::move(message), std::move(details));
}
inline ApiError forbidden_error(std::string message) { return api_error(403, "Forbidden", std::move(message)); }
inline ApiError method_not_allowed(std::string message) { return api_error(405, "MethodNotAllowed", std::move(message)); }

// A Status from a helper (patch, schema checks) as an API error: kInvalidArgument is 422 Invalid
// when `invalid` (the object is wrong), else 400 BadRequest (the request is malformed).
inline ApiError from_status(const Status& st, bool invalid) {
  if (st.code() == StatusCode::kNotFound) return not_found_error(st.message());
  if (st.code() == StatusCode::kInvalidArgument)
    return invalid ? invalid_error(st.message()) : bad_request(st.message());
  return api_error(500, "InternalError", st.message());
}

template <typename T>
class ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}  // NOLINT: implicit, like StatusOr
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const ApiError& error() const { return std::get<ApiError>(v_); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace hotswap::devcluster
