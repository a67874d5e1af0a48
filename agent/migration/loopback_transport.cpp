#include "agent/migration/loopback_transport.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "agent/migration/chunk_stream.h"

namespace hotswap::migration {
namespace {

// The state both ends share: one ring buffer per direction, under one lock.
struct LoopbackPipe {
  struct Direction {
    std::vector<uint8_t> ring;
    size_t head = 0;  // first unread byte
    size_t size = 0;  // unread bytes
    bool writer_closed = false;
    bool reader_closed = false;
  };

  explicit LoopbackPipe(size_t buffer_bytes) {
    for (Direction& d : directions) d.ring.resize(std::max<size_t>(buffer_bytes, 1));
  }

  std::mutex mu;
  std::condition_variable cv;
  Direction directions[2];  // directions[e]: bytes that end e sends
  bool interrupted[2] = {false, false};
};

class LoopbackLink final : public ByteLink {
 public:
  LoopbackLink(std::shared_ptr<LoopbackPipe> pipe, int end) : pipe_(std::move(pipe)), end_(end) {}
  ~LoopbackLink() override { shutdown(); }

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    std::unique_lock lock(pipe_->mu);
    LoopbackPipe::Direction& out = pipe_->directions[end_];
    while (n > 0) {
      if (pipe_->interrupted[end_]) return closed_locally();
      if (out.writer_closed) return closed_locally();
      if (out.reader_closed) return unavailable("connection to loopback: the peer closed the connection");
      const size_t capacity = out.ring.size();
      if (out.size < capacity) {
        const size_t tail = (out.head + out.size) % capacity;
        const size_t take = std::min({n, capacity - out.size, capacity - tail});
        std::memcpy(out.ring.data() + tail, data, take);
        out.size += take;
        data += take;
        n -= take;
        pipe_->cv.notify_all();
        continue;
      }
      if (!wait(lock, deadline)) return unavailable("timed out sending to loopback: it has stopped taking bytes");
    }
    return Status::ok_status();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    std::unique_lock lock(pipe_->mu);
    LoopbackPipe::Direction& in = pipe_->directions[1 - end_];
    for (;;) {
      if (pipe_->interrupted[end_] || in.reader_closed) return closed_locally();
      if (in.size > 0) {
        const size_t ring = in.ring.size();
        const size_t take = std::min({capacity, in.size, ring - in.head});
        std::memcpy(data, in.ring.data() + in.head, take);
        in.head = (in.head + take) % ring;
        in.size -= take;
        pipe_->cv.notify_all();
        return LinkRead{take, false};
      }
      if (in.writer_closed) return LinkRead{0, true};
      if (!wait(lock, deadline)) return LinkRead{0, false};
    }
  }

  void interrupt() override {
    std::lock_guard lock(pipe_->mu);
    pipe_->interrupted[end_] = true;
    pipe_->cv.notify_all();
  }

  void shutdown() override {
    std::lock_guard lock(pipe_->mu);
    pipe_->directions[end_].writer_closed = true;  // the peer reads what is left, then EOF
    LoopbackPipe::Direction& in = pipe_->directions[1 - end_];
    in.reader_closed = true;  // the peer's sends fail
    in.size = 0;
    pipe_->cv.notify_all();
  }

  std::string peer() const override { return "loopback"; }

 private:
  // False when the deadline passed.
  bool wait(std::unique_lock<std::mutex>& lock, Deadline deadline) {
    if (deadline == Deadline::max()) {
      pipe_->cv.wait(lock);
      return true;
    }
    return pipe_->cv.wait_until(lock, deadline) == std::cv_status::no_timeout || Clock::now() < deadline;
  }

  Status closed_locally() const { return unavailable("the connection to loopback was closed locally"); }

  std::shared_ptr<LoopbackPipe> pipe_;
  const int end_;
};

}  // namespace

std::pair<std::unique_ptr<ByteLink>, std::unique_ptr<ByteLink>> make_loopback_link_pair(size_t buffer_bytes) {
  auto pipe = std::make_shared<LoopbackPipe>(buffer_bytes);
  return {std::make_unique<LoopbackLink>(pipe, 0), std::make_unique<LoopbackLink>(pipe, 1)};
}

LoopbackTransport make_loopback_transport(SenderOptions sender_options, ReceiverOptions receiver_options,
                                          size_t buffer_bytes) {
  auto [source_end, target_end] = make_loopback_link_pair(buffer_bytes);
  LoopbackTransport t;
  t.sender = make_stream_sender(std::move(source_end), sender_options);
  t.receiver = make_stream_receiver(std::move(target_end), receiver_options);
  return t;
}

}  // namespace hotswap::migration
