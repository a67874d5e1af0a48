// Status and StatusOr: expected failures (bad input, corrupt file, peer gone) as values.
//
// A Status carries a code and a message a user can act on ("model.safetensors: tensor
// 'lm_head.weight' has shape [10, 4], config.json expects [512, 64]"). Crashes are kept for
// broken invariants. Header-only and standard-library-only, so kernels/ can use it too.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace hotswap {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong
  kNotFound,           // a named thing does not exist
  kDataLoss,           // a file or message is corrupt or truncated
  kUnimplemented,      // valid input we do not support (an architecture, a dtype)
  kResourceExhausted,  // out of KV blocks, memory, queue space
  kFailedPrecondition, // the system is not in a state to do this
  kUnavailable,        // a peer or device is gone; retrying may help
  kInternal,           // a broken invariant surfaced as an error
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>"
  std::string to_string() const;

  // Returns a copy with "context: " prepended to the message.
  Status with_context(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status failed_precondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

inline const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kDataLoss: return "data loss";
    case StatusCode::kUnimplemented: return "unimplemented";
    case StatusCode::kResourceExhausted: return "resource exhausted";
    case StatusCode::kFailedPrecondition: return "failed precondition";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kInternal: return "internal";
  }
  return "unknown";
}

inline std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T value) : value_(std::move(value)) {}                                  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  // By value: `for (auto& x : f().value())` must not iterate a destroyed temporary.
  T value() && { assert(ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace hotswap

// Early return on error, in functions that return Status or StatusOr.
#define HOTSWAP_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::hotswap::Status _st = (expr);          \
    if (!_st.ok()) return _st;               \
  } while (0)

#define HOTSWAP_CONCAT_INNER(a, b) a##b
#define HOTSWAP_CONCAT(a, b) HOTSWAP_CONCAT_INNER(a, b)
#define HOTSWAP_ASSIGN_OR_RETURN(lhs, expr) \
  HOTSWAP_ASSIGN_OR_RETURN_IMPL(HOTSWAP_CONCAT(_status_or_, __LINE__), lhs, expr)
#define HOTSWAP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
