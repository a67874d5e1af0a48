#include "common/http_framing.h"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace hotswap::http {
namespace {

// A chunk-size line or a trailer line longer than this is not a client's mistake.
constexpr size_t kMaxLineBytes = 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

bool parse_decimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

bool parse_hex(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 15) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return false;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

}  // namespace

bool MessageFramer::fail(Progress* p, int status, std::string what) {
  failed_ = true;
  p->error_status = status;
  p->error = std::move(what) + " (at byte " + std::to_string(offset_) + ")";
  return false;
}

void MessageFramer::finish_message(Progress* p) {
  ++p->messages;
  phase_ = Phase::kIdle;
  head_.clear();
  line_.clear();
  trailer_bytes_ = 0;
}

bool MessageFramer::parse_head(Progress* p) {
  std::string_view head(head_);
  const size_t first_end = head.find("\r\n");
  std::string_view first = head.substr(0, first_end);
  bool is_head_request = false, interim = false, no_body = false, switching = false;
  if (side_ == Side::kRequest) {
    const size_t sp = first.find(' ');
    if (sp == std::string_view::npos || sp == 0) return fail(p, 400, "the request line has no method");
    is_head_request = first.substr(0, sp) == "HEAD";
  } else {
    if (first.size() < 12 || first.substr(0, 5) != "HTTP/" || first[8] != ' ')
      return fail(p, 502, "the status line is malformed");
    uint64_t code = 0;
    if (!parse_decimal(first.substr(9, 3), &code)) return fail(p, 502, "the status code is not a number");
    interim = code >= 100 && code < 200;
    switching = code == 101;
    no_body = code == 204 || code == 304;
  }
  bool has_length = false, chunked = false, has_coding = false;
  uint64_t length = 0;
  size_t pos = first_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t')
      return fail(p, 400, "a header line is folded (obsolete line folding is refused)");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(p, 400, "a header line has no name");
    const std::string name = lower(line.substr(0, colon));
    if (name.find_first_of(" \t") != std::string::npos) return fail(p, 400, "a header name has white space");
    std::string_view value = trim(line.substr(colon + 1));
    if (name == "content-length") {
      uint64_t v = 0;
      if (!parse_decimal(value, &v)) return fail(p, 400, "Content-Length is not a number: '" + std::string(value) + "'");
      if (has_length && v != length) return fail(p, 400, "two different Content-Length headers");
      has_length = true;
      length = v;
    } else if (name == "transfer-encoding") {
      const std::string coding = lower(value);
      if (has_coding || coding != "chunked")
        return fail(p, 400, "only the chunked transfer coding, once, is accepted; got '" + std::string(value) + "'");
      has_coding = chunked = true;
    }
  }
  if (has_length && chunked) return fail(p, 400, "a message with both Content-Length and Transfer-Encoding");
  head_.clear();
  if (side_ == Side::kResponse && interim) {
    // 100 Continue and the like: another head follows; 101 hands the connection over.
    phase_ = switching ? Phase::kUntilClose : Phase::kIdle;
    return true;
  }
  ++p->heads;
  if (side_ == Side::kRequest) p->head_requests.push_back(is_head_request);
  if (side_ == Side::kResponse && answers_head_ && answers_head_()) no_body = true;
  if (no_body) {
    finish_message(p);
  } else if (chunked) {
    phase_ = Phase::kChunkSize;
  } else if (has_length) {
    remaining_ = length;
    if (length == 0) finish_message(p);
    else phase_ = Phase::kBody;
  } else if (side_ == Side::kRequest) {
    finish_message(p);  // a request without either has no body
  } else {
    phase_ = Phase::kUntilClose;
  }
  return true;
}

MessageFramer::Progress MessageFramer::feed(const char* data, size_t n) {
  Progress p;
  if (failed_) {
    p.error_status = 400;
    p.error = "the connection's framing failed earlier";
    return p;
  }
  size_t i = 0;
  auto take_line = [&](size_t cap, const char* what) -> int {  // 1: line complete, 0: need more, -1: failed
    while (i < n) {
      const char c = data[i++];
      ++offset_;
      line_.push_back(c);
      if (c == '\n') return 1;
      if (line_.size() > cap) {
        fail(&p, 400, std::string(what) + " is longer than " + std::to_string(cap) + " bytes");
        return -1;
      }
    }
    return 0;
  };
  auto skip_remaining = [&] {  // body bytes are counted, not kept; true once none remain
    const uint64_t take = std::min<uint64_t>(remaining_, n - i);
    i += take;
    offset_ += take;
    remaining_ -= take;
    return remaining_ == 0;
  };
  while (i < n) {
    switch (phase_) {
      case Phase::kIdle:
        // RFC 9112 2.2: a server ignores empty lines before a request line.
        if (side_ == Side::kRequest && (data[i] == '\r' || data[i] == '\n')) {
          ++i;
          ++offset_;
          break;
        }
        phase_ = Phase::kHead;
        break;
      case Phase::kHead: {
        // Copy up to the end of the head or of the input, whichever first.
        while (i < n) {
          head_.push_back(data[i++]);
          ++offset_;
          if (head_.size() > max_head_bytes_) {
            fail(&p, side_ == Side::kRequest ? 431 : 502,
                 "the head is longer than " + std::to_string(max_head_bytes_) + " bytes");
            return p;
          }
          if (head_.size() >= 4 && head_.compare(head_.size() - 4, 4, "\r\n\r\n") == 0) break;
        }
        if (head_.size() >= 4 && head_.compare(head_.size() - 4, 4, "\r\n\r\n") == 0 && !parse_head(&p)) return p;
        break;
      }
      case Phase::kBody:
        if (skip_remaining()) finish_message(&p);
        break;
      case Phase::kChunkSize: {
        const int r = take_line(kMaxLineBytes, "a chunk-size line");
        if (r < 0) return p;
        if (r == 0) break;
        std::string_view size_text(line_);
        size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
        uint64_t size = 0;
        if (!parse_hex(trim(size_text), &size)) {
          fail(&p, 400, "a chunk size is not hexadecimal: '" + std::string(trim(line_)) + "'");
          return p;
        }
        line_.clear();
        if (size == 0) {
          phase_ = Phase::kTrailers;
        } else {
          remaining_ = size;
          phase_ = Phase::kChunkData;
        }
        break;
      }
      case Phase::kChunkData:
        if (skip_remaining()) phase_ = Phase::kChunkDataEnd;
        break;
      case Phase::kChunkDataEnd: {
        // Exactly CRLF after a chunk's data; anything else is refused at its first byte.
        const char want = line_.empty() ? '\r' : '\n';
        if (data[i] != want) {
          fail(&p, 400, "a chunk's data is not followed by CRLF");
          return p;
        }
        ++i;
        ++offset_;
        line_.push_back(want);
        if (line_.size() == 2) {
          line_.clear();
          phase_ = Phase::kChunkSize;
        }
        break;
      }
      case Phase::kTrailers: {
        const int r = take_line(kMaxLineBytes, "a trailer line");
        if (r < 0) return p;
        if (r == 0) break;
        trailer_bytes_ += line_.size();
        if (trailer_bytes_ > max_head_bytes_) {
          fail(&p, 431, "the trailers are longer than " + std::to_string(max_head_bytes_) + " bytes");
          return p;
        }
        const bool last = line_ == "\r\n";
        line_.clear();
        if (last) finish_message(&p);
        break;
      }
      case Phase::kUntilClose:
        offset_ += n - i;
        i = n;
        break;
    }
  }
  return p;
}

}  // namespace hotswap::http
