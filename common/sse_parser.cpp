#include "common/sse_parser.h"

namespace hotswap {

Status SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (!error_.ok()) return error_;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (after_cr_) {
      after_cr_ = false;
      if (bytes[pos] == '\n') {  // the second half of a "\r\n"
        ++pos;
        continue;
      }
    }
    size_t end = bytes.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(pos));
      break;
    }
    line_.append(bytes.substr(pos, end - pos));
    after_cr_ = bytes[end] == '\r';
    pos = end + 1;
    end_line(out);
    if (line_.size() + event_.data.size() > max_event_bytes_) break;
  }
  if (line_.size() + event_.data.size() > max_event_bytes_) {
    error_ = data_loss("server-sent event longer than " + std::to_string(max_event_bytes_) + " bytes");
    return error_;
  }
  return Status();
}

void SseParser::end_line(std::vector<SseEvent>& out) {
  if (line_.empty()) {  // a blank line dispatches the event
    if (has_data_) {
      out.push_back(std::move(event_));
    }
    event_ = SseEvent();
    event_started_ = false;
    has_data_ = false;
    return;
  }
  if (line_[0] == ':') {  // a comment
    line_.clear();
    return;
  }
  std::string_view line(line_);
  std::string_view field = line, value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  event_started_ = true;
  if (field == "data") {
    if (has_data_) event_.data.push_back('\n');
    event_.data.append(value);
    has_data_ = true;
  } else if (field == "id") {
    // The spec ignores an id containing NUL; so do we.
    if (value.find('\0') == std::string_view::npos) {
      event_.has_id = true;
      event_.id.assign(value);
    }
  } else if (field == "event") {
    event_.type.assign(value);
  }
  // "retry" and unknown fields are ignored, as the spec says.
  line_.clear();
}

}  // namespace hotswap
