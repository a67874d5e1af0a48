#include "agent/engine/text_stream.h"

#include <algorithm>

#include "agent/engine/byte_level.h"

namespace hotswap::engine {

namespace {

// Expected length of a UTF-8 sequence from its lead byte; 0 for a continuation or invalid byte.
int utf8_lead_length(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

size_t utf8_complete_prefix(std::string_view s) {
  // Look back at most 3 bytes for the lead byte of the last character.
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if (is_continuation(c)) continue;
    int len = utf8_lead_length(c);
    if (len > static_cast<int>(back)) return n - back;  // incomplete
    return n;
  }
  return n;
}

TextStream::TextStream(std::vector<std::string> stop_strings) {
  for (auto& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
}

TextStream::Update TextStream::append(std::string_view token_bytes) {
  Update up;
  bytes_.append(token_bytes);
  std::string_view pending(bytes_);
  pending.remove_prefix(emitted_);
  // Earliest stop string occurrence in the text not yet shown.
  size_t stop_at = std::string_view::npos;
  for (const auto& s : stops_) stop_at = std::min(stop_at, pending.find(s));
  if (stop_at != std::string_view::npos) {
    up.text = utf8_lossy(pending.substr(0, stop_at));
    up.stopped = true;
    emitted_ += stop_at;
    bytes_.resize(emitted_);
    return up;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - 1, pending.size()); len > hold; --len) {
      if (pending.substr(pending.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  size_t safe = utf8_complete_prefix(pending.substr(0, pending.size() - hold));
  up.text = utf8_lossy(pending.substr(0, safe));
  emitted_ += safe;
  return up;
}

std::string TextStream::flush() {
  std::string out = utf8_lossy(std::string_view(bytes_).substr(emitted_));
  emitted_ = bytes_.size();
  return out;
}

}  // namespace hotswap::engine
