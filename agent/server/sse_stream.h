// The server-sent-event side of one streamed request: numbered events (id 0, 1, 2, ...), a
// bounded log of the recent ones, and at most one attached consumer — the client, or after a
// migration the source's relay — whose body is a producer/consumer buffer that each event is
// written and flushed into. A consumer that reconnects with Last-Event-ID: N replaces the
// attached one and gets every logged event after N, then the live ones: nothing lost, nothing
// repeated.
//
// The buffer writes themselves happen on the server's SseWriter thread, in order per consumer:
// a put and a sync into cpprest's buffer cost ~130 us per event, most of it waiting on the
// buffer's reader, and on the engine thread that was ~2 ms of every 16-stream decode step in
// which the kernels sat idle. What an append leaves for the writer is joined into one write.
//
// Threads: append/close run on the engine thread, comment() on the heartbeat thread, attach()
// on a handler thread; one mutex serialises them. Nothing here blocks.
#pragma once

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace hotswap::agent {

// One consumer's body and what waits to be written into it.
struct SseBody {
  concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
  uint64_t generation = 0;
  std::mutex mu;         // the three below
  std::string pending;   // text not yet put into the buffer
  bool close = false;    // close the buffer after pending
  bool queued = false;   // on the writer's queue
};

// The thread that writes SseBody text into the buffers. Destruction writes what is queued,
// then joins.
class SseWriter {
 public:
  SseWriter();
  ~SseWriter();
  SseWriter(const SseWriter&) = delete;
  SseWriter& operator=(const SseWriter&) = delete;

  void write(const std::shared_ptr<SseBody>& body, const std::string& text);
  void close(const std::shared_ptr<SseBody>& body);

 private:
  void enqueue_locked(const std::shared_ptr<SseBody>& body);  // body->mu held
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<SseBody>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

class SseStream : public std::enable_shared_from_this<SseStream> {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts a reply on the request and reports when it ends (ok: the body was sent).
  using ReplyFn =
      std::function<void(const web::http::http_request&, web::http::http_response, std::function<void(bool ok)>)>;

  // next_event_id: the id of the first event this stream appends (0 for a new request, the
  // source's next id for a migrated one). log_limit: events kept for resumption once a first
  // consumer has attached (before that, all are kept: none has been sent anywhere yet).
  SseStream(std::string request_id, int64_t next_event_id, size_t log_limit, ReplyFn reply,
            std::shared_ptr<SseWriter> writer);

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
  void write_locked(const std::string& text);
  void close_consumer_locked();
  void trim_locked();

  const std::string request_id_;
  const size_t log_limit_;
  ReplyFn reply_;
  const std::shared_ptr<SseWriter> writer_;
  mutable std::mutex mu_;
  std::deque<std::pair<int64_t, std::string>> log_;  // (id, the whole "id: ..\ndata: ..\n\n" text)
  int64_t first_event_id_;                           // the id this stream started at
  int64_t next_event_id_;
  bool finished_ = false;
  bool ever_attached_ = false;
  std::atomic<bool> outlives_consumer_{false};
  Clock::time_point finished_at_{}, last_write_;
  std::shared_ptr<SseBody> consumer_;
  uint64_t consumer_generation_ = 0;
};

}  // namespace hotswap::agent
