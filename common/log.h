// Logging to stderr: one line per message, "2026-11-22T23:59:59.123Z INFO message". Thread-safe
// (one write per line).
#pragma once

#include <string>

namespace hotswap {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void log_message(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) { log_message(LogLevel::kInfo, m); }
inline void log_warn(const std::string& m) { log_message(LogLevel::kWarn, m); }
inline void log_error(const std::string& m) { log_message(LogLevel::kError, m); }

}  // namespace hotswap
