// Incremental parser for a text/event-stream body (server-sent events, WHATWG HTML §9.2),
// fed the bytes in whatever pieces they arrive: a line, a field or a "\r\n" may be split
// anywhere between two feeds.
//
// Lines end in "\n", "\r\n" or "\r". A line is "field: value" (the one space after the colon
// is optional), a comment (starts with ':'), or blank (ends the event). An event is dispatched
// only when it has at least one data line, as the spec says, so keep-alive comments produce
// nothing. Unlike a browser, the parser reports the id per event (did this event carry an id
// line, and with what value) instead of a sticky "last event id": its users (the load generator,
// the migration relay) check ids strictly, and an event without an id must be visible as such.
//
// One instance per stream, used by one thread at a time. Memory is bounded by max_event_bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace hotswap {

struct SseEvent {
  bool has_id = false;
  std::string id;    // the value of the last id line of the event, as sent
  std::string type;  // the "event:" field; empty when absent
  std::string data;  // the data lines joined with '\n'
};

class SseParser {
 public:
  static constexpr size_t kDefaultMaxEventBytes = 16u << 20;

  explicit SseParser(size_t max_event_bytes = kDefaultMaxEventBytes) : max_event_bytes_(max_event_bytes) {}

  // Parses `bytes` and appends every event they complete to `out`. An event larger than
  // max_event_bytes is an error (kDataLoss); errors are sticky, since the stream cannot be
  // resynchronised.
  Status feed(std::string_view bytes, std::vector<SseEvent>& out);

  // True when the bytes fed so far end inside an event (a partial line, or fields without the
  // blank line that dispatches them): a stream that ends here was cut.
  bool mid_event() const { return !line_.empty() || event_started_; }

 private:
  void end_line(std::vector<SseEvent>& out);

  size_t max_event_bytes_;
  std::string line_;            // the current, unfinished line
  SseEvent event_;              // fields of the event being built
  bool event_started_ = false;  // a field line was seen since the last blank line
  bool has_data_ = false;       // a data line was seen (data may still be empty)
  bool after_cr_ = false;       // the last byte was '\r': a following '\n' ends nothing
  Status error_;
};

}  // namespace hotswap
