// The server-sent-event side of one streamed request: numbered events (id 0, 1, 2, ...), a
// bounded log of the recent ones, and at most one attached consumer — the client, or after a
// migration the source's relay — whose body is a producer/consumer buffer that each event is
// written and flushed into. A consumer that reconnects with Last-Event-ID: N replaces the
// attached one and gets every logged event after N, then the live ones: nothing lost, nothing
// repeated.
//
// Threads: append/close run on the engine thread, comment() on the heartbeat thread, attach()
// on a handler thread; one mutex serialises them. Nothing here blocks.
#pragma once

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace hotswap::agent {

class SseStream : public std::enable_shared_from_this<SseStream> {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts a reply on the request and reports when it ends (ok: the body was sent).
  using ReplyFn =
      std::function<void(const web::http::http_request&, web::http::http_response, std::function<void(bool ok)>)>;

  // next_event_id: the id of the first event this stream appends (0 for a new request, the
  // source's next id for a migrated one). log_limit: events kept for resumption once a first
  // consumer has attached (before that, all are kept: none has been sent anywhere yet).
  SseStream(std::string request_id, int64_t next_event_id, size_t log_limit, ReplyFn reply);

  // Appends one event with this data, sends it to the consumer if one is attached.
  void append(const std::string& data);
  // Marks the end: the consumer's body ends after what was appended; later attaches replay the
  // log and end at once.
  void finish();
  // Sends an SSE comment line if nothing was written for `quiet`; false when finished.
  bool heartbeat(std::chrono::milliseconds quiet);

  // Attaches `request` as the consumer, replaying logged events after last_event_id (-1:
  // from the first logged one, which must then be event 0 or the stream's first). Error
  // (nothing changes) when events after last_event_id are no longer logged or never existed.
  // on_gone(): the consumer's connection failed before the stream finished.
  Status attach(const web::http::http_request& request, int64_t last_event_id, std::function<void()> on_gone);

  // A stream whose request moved here from another agent keeps running when its consumer (the
  // source's relay) goes away: the client may come back here with Last-Event-ID.
  void set_outlives_consumer(bool v) { outlives_consumer_ = v; }
  bool outlives_consumer() const { return outlives_consumer_; }

  bool finished() const;
  Clock::time_point finished_at() const;
  int64_t next_event_id() const;
  const std::string& request_id() const { return request_id_; }

 private:
  struct Consumer {
    concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
    uint64_t generation = 0;
  };
  void write_locked(const std::string& text);
  void close_consumer_locked();
  void trim_locked();

  const std::string request_id_;
  const size_t log_limit_;
  ReplyFn reply_;
  mutable std::mutex mu_;
  std::deque<std::pair<int64_t, std::string>> log_;  // (id, the whole "id: ..\ndata: ..\n\n" text)
  int64_t first_event_id_;                           // the id this stream started at
  int64_t next_event_id_;
  bool finished_ = false;
  bool ever_attached_ = false;
  std::atomic<bool> outlives_consumer_{false};
  Clock::time_point finished_at_{}, last_write_;
  std::unique_ptr<Consumer> consumer_;
  uint64_t consumer_generation_ = 0;
};

}  // namespace hotswap::agent
