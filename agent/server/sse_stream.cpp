#include "agent/server/sse_stream.h"

#include "agent/server/openai_protocol.h"

namespace hotswap::agent {

namespace {

// Consumes a task's outcome: an unobserved exception in a pplx task ends the process.
template <typename T>
void ignore_outcome(pplx::task<T> t) {
  t.then([](pplx::task<T> done) {
    try {
      done.get();
    } catch (...) {
    }
  });
}

}  // namespace

SseWriter::SseWriter() : thread_([this] { loop(); }) {}

SseWriter::~SseWriter() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SseWriter::write(const std::shared_ptr<SseBody>& body, const std::string& text) {
  std::lock_guard<std::mutex> lk(body->mu);
  body->pending += text;
  enqueue_locked(body);
}

void SseWriter::close(const std::shared_ptr<SseBody>& body) {
  std::lock_guard<std::mutex> lk(body->mu);
  body->close = true;
  enqueue_locked(body);
}

void SseWriter::enqueue_locked(const std::shared_ptr<SseBody>& body) {
  if (body->queued) return;  // the text joins what already waits
  body->queued = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(body);
  }
  cv_.notify_one();
}

void SseWriter::loop() {
  for (;;) {
    std::shared_ptr<SseBody> body;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      body = std::move(queue_.front());
      queue_.pop_front();
    }
    auto data = std::make_shared<std::string>();
    bool close = false;
    {
      std::lock_guard<std::mutex> lk(body->mu);
      data->swap(body->pending);
      close = body->close;
      body->queued = false;
    }
    if (!data->empty()) {
      body->buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(data->data()), data->size())
          .then([data](pplx::task<size_t> t) {
            try {
              t.get();
            } catch (...) {
            }
          });
      // Without a sync the buffer holds data back until a whole read block (64 KiB) is there:
      // each event must leave now.
      ignore_outcome(body->buffer.sync());
    }
    if (close) ignore_outcome(body->buffer.close(std::ios_base::out));
  }
}

SseStream::SseStream(std::string request_id, int64_t next_event_id, size_t log_limit, ReplyFn reply,
                     std::shared_ptr<SseWriter> writer)
    : request_id_(std::move(request_id)),
      log_limit_(std::max<size_t>(1, log_limit)),
      reply_(std::move(reply)),
      writer_(std::move(writer)),
      first_event_id_(next_event_id),
      next_event_id_(next_event_id),
      last_write_(Clock::now()) {}

void SseStream::write_locked(const std::string& text) {
  last_write_ = Clock::now();
  if (consumer_) writer_->write(consumer_, text);
}

void SseStream::trim_locked() {
  // Until a first consumer has taken them, every event is kept: it has not been sent anywhere.
  if (!ever_attached_) return;
  while (log_.size() > log_limit_) log_.pop_front();
}

void SseStream::close_consumer_locked() {
  if (!consumer_) return;
  writer_->close(consumer_);
  consumer_.reset();
}

void SseStream::append(const std::string& data) {
  std::lock_guard<std::mutex> lk(mu_);
  if (finished_) return;
  std::string text = sse_event(next_event_id_, data);
  log_.emplace_back(next_event_id_, text);
  trim_locked();
  ++next_event_id_;
  write_locked(text);
}

void SseStream::finish() {
  std::lock_guard<std::mutex> lk(mu_);
  if (finished_) return;
  finished_ = true;
  finished_at_ = Clock::now();
  close_consumer_locked();
}

bool SseStream::heartbeat(std::chrono::milliseconds quiet) {
  std::lock_guard<std::mutex> lk(mu_);
  if (finished_) return false;
  if (consumer_ && Clock::now() - last_write_ >= quiet) write_locked(": keep-alive\n\n");
  return true;
}

Status SseStream::attach(const web::http::http_request& request, int64_t last_event_id, std::function<void()> on_gone) {
  std::lock_guard<std::mutex> lk(mu_);
  const int64_t want = last_event_id + 1;  // the first event the consumer lacks
  const int64_t oldest = log_.empty() ? next_event_id_ : log_.front().first;
  if (last_event_id >= 0 && want < first_event_id_)
    return failed_precondition("stream '" + request_id_ + "' starts at event " + std::to_string(first_event_id_) +
                               " on this server; events before it are not here");
  if (want < oldest && !(last_event_id < 0 && oldest == first_event_id_))
    return failed_precondition("stream '" + request_id_ + "': events from " + std::to_string(want) +
                               " are no longer held (the oldest held is " + std::to_string(oldest) + ")");
  if (want > next_event_id_)
    return invalid_argument("stream '" + request_id_ + "' has sent events up to " + std::to_string(next_event_id_ - 1) +
                            "; Last-Event-ID " + std::to_string(last_event_id) + " is beyond them");
  // The old consumer (if any) ends here; its reply completing is not a client going away.
  close_consumer_locked();
  consumer_ = std::make_shared<SseBody>();
  consumer_->generation = ++consumer_generation_;
  web::http::http_response response(web::http::status_codes::OK);
  response.headers().set_content_type("text/event-stream");
  response.headers().add("Cache-Control", "no-cache");
  response.headers().add("X-Request-Id", request_id_);
  response.set_body(consumer_->buffer.create_istream());
  const uint64_t generation = consumer_->generation;
  for (const auto& [id, text] : log_)
    if (id >= want) write_locked(text);
  ever_attached_ = true;
  trim_locked();
  if (finished_) close_consumer_locked();
  std::weak_ptr<SseStream> weak = weak_from_this();
  reply_(request, response, [weak, generation, on_gone](bool ok) {
    auto self = weak.lock();
    if (ok || !self) return;
    bool current;
    {
      std::lock_guard<std::mutex> lk2(self->mu_);
      current = self->consumer_ && self->consumer_->generation == generation && !self->finished_;
      if (current) self->close_consumer_locked();
    }
    if (current && on_gone) on_gone();
  });
  return Status();
}

bool SseStream::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

SseStream::Clock::time_point SseStream::finished_at() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_at_;
}

int64_t SseStream::next_event_id() const {
  std::lock_guard<std::mutex> lk(mu_);
  return next_event_id_;
}

}  // namespace hotswap::agent
