#include "agent/migration/cuda/bulk_link.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/migration/little_endian.h"

namespace hotswap::migration {
namespace {

// A CREDIT frame waits at most this long for room in the socket (the source's reader thread
// always reads, so this is only a source that stopped).
constexpr auto kCreditSendTimeout = std::chrono::seconds(1);

const char* frame_name(BulkFrameType t) {
  switch (t) {
    case BulkFrameType::kData:
      return "DATA";
    case BulkFrameType::kCredit:
      return "CREDIT";
    case BulkFrameType::kBytes:
      return "BYTES";
  }
  return "?";
}

StatusOr<std::pair<UniqueFd, UniqueFd>> make_pipe(const std::string& peer) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return unavailable("pipe2() for the connection to " + peer + ": " + std::strerror(errno));
  }
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

struct LinkPipes {
  UniqueFd wake_read, wake_write, stop_read, stop_write;
};

StatusOr<LinkPipes> make_link_pipes(const std::string& peer) {
  LinkPipes p;
  HOTSWAP_ASSIGN_OR_RETURN(auto wake, make_pipe(peer));
  HOTSWAP_ASSIGN_OR_RETURN(auto stop, make_pipe(peer));
  p.wake_read = std::move(wake.first);
  p.wake_write = std::move(wake.second);
  p.stop_read = std::move(stop.first);
  p.stop_write = std::move(stop.second);
  return p;
}

void poke(int fd) {
  const char byte = 1;
  while (::write(fd, &byte, 1) < 0 && errno == EINTR) {
  }
}

// What both ends share: the socket, the reader thread that takes its frames, interrupt() and the
// state the frames change, under mu_.
class BulkLinkBase : public ByteLink {
 public:
  std::string peer() const override { return peer_; }

  void interrupt() override {
    if (interrupted_.exchange(true)) return;
    poke(wake_write_.get());
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

 protected:
  BulkLinkBase(UniqueFd socket, LinkPipes pipes, std::string peer)
      : socket_(std::move(socket)),
        wake_read_(std::move(pipes.wake_read)),
        wake_write_(std::move(pipes.wake_write)),
        stop_read_(std::move(pipes.stop_read)),
        stop_write_(std::move(pipes.stop_write)),
        peer_(std::move(peer)) {}

  void start_reader() {
    reader_ = std::thread([this] { read_loop(); });
  }

  void stop_reader() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    poke(stop_write_.get());
    if (reader_.joinable()) reader_.join();
  }

  // A frame header from the peer (for BYTES, before its payload), under no lock.
  virtual Status on_frame(const BulkFrame& frame) = 0;
  // Payload bytes of a BYTES frame.
  virtual Status on_bytes(const uint8_t* data, size_t n) { return protocol_error("unexpected BYTES"); }
  // The reader thread is done: EOF, a reset, or a protocol error (already recorded).
  virtual void on_end() {}

  Status closed_locally() const { return unavailable("the connection to " + peer_ + " was closed locally"); }
  Status protocol_error(const std::string& what) const {
    return data_loss("protocol error on the connection to " + peer_ + ": " + what);
  }
  // Why the peer is gone, under mu_.
  Status gone_locked() const {
    if (!reader_error_.ok()) return reader_error_;
    return unavailable("connection to " + peer_ + ": the peer closed the connection");
  }

  // False when the deadline passed.
  bool wait(std::unique_lock<std::mutex>& lock, Deadline deadline) {
    if (deadline == Deadline::max()) {
      cv_.wait(lock);
      return true;
    }
    return cv_.wait_until(lock, deadline) == std::cv_status::no_timeout || Clock::now() < deadline;
  }

  // Under send_mu_. After a failure the socket may hold half a frame, so every later send fails.
  Status send_frame_locked(const BulkFrame& frame, const uint8_t* payload, size_t n, Deadline deadline) {
    if (!send_broken_.ok()) return send_broken_;
    const auto header = encode_bulk_frame(frame);
    Status st = send_all(socket_.get(), header.data(), header.size(), deadline, wake_read_.get(), peer_);
    if (st.ok() && n > 0) st = send_all(socket_.get(), payload, n, deadline, wake_read_.get(), peer_);
    if (!st.ok()) send_broken_ = st;
    return st;
  }

  UniqueFd socket_;
  UniqueFd wake_read_;  // interrupt() writes to it; every socket wait of a send watches it
  UniqueFd wake_write_;
  UniqueFd stop_read_;  // the destructor's signal to the reader thread
  UniqueFd stop_write_;
  const std::string peer_;
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> shut_{false};
  std::atomic<bool> peer_gone_{false};  // EOF, a reset or a protocol error

  std::mutex send_mu_;  // one frame at a time on the socket
  Status send_broken_;  // under send_mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool peer_eof_ = false;
  Status reader_error_;
  Deadline peer_gone_time_;

 private:
  void read_loop() {
    std::vector<uint8_t> buffer(256u << 10);
    std::array<uint8_t, kBulkFrameBytes> head{};
    size_t head_have = 0;
    uint64_t payload_left = 0;
    Status end;  // OK: EOF
    for (;;) {
      pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
      const int r = ::poll(fds, 2, -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        end = unavailable("poll() on the connection to " + peer_ + ": " + std::strerror(errno));
        break;
      }
      if (fds[1].revents != 0) return;  // stopping: the destructor is past caring
      const ssize_t got = ::recv(socket_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (got == 0) break;
      if (got < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        end = unavailable("connection to " + peer_ + ": " + std::strerror(errno));
        break;
      }
      const uint8_t* p = buffer.data();
      size_t left = static_cast<size_t>(got);
      while (left > 0 && end.ok()) {
        if (payload_left > 0) {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(payload_left, left));
          end = on_bytes(p, take);
          p += take;
          left -= take;
          payload_left -= take;
          continue;
        }
        const size_t take = std::min(left, kBulkFrameBytes - head_have);
        std::memcpy(head.data() + head_have, p, take);
        head_have += take;
        p += take;
        left -= take;
        if (head_have < kBulkFrameBytes) break;
        head_have = 0;
        auto frame = decode_bulk_frame(head.data());
        if (!frame.ok()) {
          end = protocol_error(frame.status().message());
          break;
        }
        end = on_frame(*frame);
        if (frame->type == BulkFrameType::kBytes) payload_left = frame->value;
      }
      if (!end.ok()) break;
    }
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      if (end.ok() && (head_have > 0 || payload_left > 0)) {
        end = protocol_error("the peer closed the connection in the middle of a frame");
      }
      if (end.ok()) {
        peer_eof_ = true;
      } else {
        reader_error_ = end;
      }
      peer_gone_time_ = Clock::now();
      peer_gone_.store(true);
      cv_.notify_all();
    }
    on_end();
  }

  std::thread reader_;
};

// The source's end: send() through the writer, receive() of the target's BYTES.
class BulkSourceLink final : public BulkLinkBase {
 public:
  BulkSourceLink(UniqueFd socket, LinkPipes pipes, std::unique_ptr<BulkWriter> writer, std::string peer)
      : BulkLinkBase(std::move(socket), std::move(pipes), std::move(peer)),
        writer_(std::move(writer)),
        credit_(writer_->window_bytes()),
        announce_first_(writer_->announce_before_write()) {
    cancel_ = [this]() -> Status {
      if (interrupted_.load() || shut_.load()) return closed_locally();
      if (peer_gone_.load()) {
        std::lock_guard lock(mu_);
        return gone_locked();
      }
      return Status::ok_status();
    };
    start_reader();
  }

  ~BulkSourceLink() override {
    shutdown();
    interrupt();
    stop_reader();
    writer_.reset();
  }

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    std::lock_guard call(call_mu_);
    {
      std::lock_guard lock(send_mu_);
      if (!send_broken_.ok()) return send_broken_;
    }
    while (n > 0) {
      size_t k = 0;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (interrupted_.load() || shut_.load()) return closed_locally();
          if (peer_gone_.load()) return gone_locked();
          if (credit_ > 0) break;
          if (!wait(lock, deadline))
            return unavailable("timed out sending to " + peer_ + ": it has stopped taking bytes");
        }
        k = static_cast<size_t>(std::min<uint64_t>({n, credit_, writer_->max_piece_bytes(offset_)}));
        credit_ -= k;
        outstanding_ += k;
      }
      Status st;
      if (announce_first_) st = send_data(k, deadline);
      if (st.ok()) st = write_piece(data, k, deadline);
      if (st.ok() && !announce_first_) st = send_data(k, deadline);
      if (!st.ok()) return st;
      offset_ += k;
      data += k;
      n -= k;
    }
    return Status::ok_status();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    std::unique_lock lock(mu_);
    for (;;) {
      if (interrupted_.load()) return closed_locally();
      if (inbound_.size() > inbound_head_) {
        const size_t take = std::min(capacity, inbound_.size() - inbound_head_);
        std::memcpy(data, inbound_.data() + inbound_head_, take);
        inbound_head_ += take;
        if (inbound_head_ == inbound_.size()) {
          inbound_.clear();
          inbound_head_ = 0;
        } else if (inbound_head_ >= (1u << 20) && 2 * inbound_head_ >= inbound_.size()) {
          inbound_.erase(inbound_.begin(), inbound_.begin() + static_cast<std::ptrdiff_t>(inbound_head_));
          inbound_head_ = 0;  // a reader that never quite catches up does not grow the buffer forever
        }
        cv_.notify_all();  // the reader may wait for room
        return LinkRead{take, false};
      }
      if (!reader_error_.ok()) return reader_error_;
      if (peer_eof_) return LinkRead{0, true};
      if (!wait(lock, deadline)) return LinkRead{0, false};
    }
  }

  void shutdown() override {
    shut_.store(true);
    {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
    release_and_close();
  }

 private:
  Status send_data(size_t k, Deadline deadline) {
    std::lock_guard lock(send_mu_);
    return send_frame_locked({BulkFrameType::kData, k}, nullptr, 0, deadline);
  }

  Status write_piece(const uint8_t* data, size_t k, Deadline deadline) {
    std::lock_guard lock(writer_mu_);
    if (writer_closed_) return closed_locally();
    Status st = writer_->write(offset_, data, k, deadline, cancel_);
    if (!st.ok()) {
      std::lock_guard s(send_mu_);
      if (send_broken_.ok()) send_broken_ = st;  // the bytes in the mover no longer match the stream
    }
    return st;
  }

  // The target must not free what the writer maps before the writer lets go: release it, then
  // tell the target (EOF) that it may.
  void release_and_close() {
    {
      std::lock_guard lock(writer_mu_);
      if (!writer_closed_) {
        writer_->close();
        writer_closed_ = true;
      }
    }
    (void)::shutdown(socket_.get(), SHUT_WR);
  }

  Status on_frame(const BulkFrame& frame) override {
    std::lock_guard lock(mu_);
    if (frame.type == BulkFrameType::kBytes) return Status::ok_status();  // the payload follows
    if (frame.type != BulkFrameType::kCredit) {
      return protocol_error(std::string("a ") + frame_name(frame.type) + " frame from the target");
    }
    if (frame.value > outstanding_) {
      return protocol_error("a CREDIT of " + std::to_string(frame.value) + " bytes with " +
                            std::to_string(outstanding_) + " bytes unacknowledged");
    }
    outstanding_ -= frame.value;
    credit_ += frame.value;
    cv_.notify_all();
    return Status::ok_status();
  }

  Status on_bytes(const uint8_t* data, size_t n) override {
    std::unique_lock lock(mu_);
    while (inbound_.size() - inbound_head_ >= kMaxBulkInboundBytes && !stopping_) cv_.wait(lock);
    if (stopping_) return closed_locally();
    inbound_.insert(inbound_.end(), data, data + n);
    cv_.notify_all();
    return Status::ok_status();
  }

  void on_end() override { release_and_close(); }

  std::unique_ptr<BulkWriter> writer_;
  BulkCancel cancel_;
  std::mutex call_mu_;    // one send() at a time
  uint64_t offset_ = 0;   // stream bytes moved; under call_mu_
  std::mutex writer_mu_;  // a write() in progress or close()
  bool writer_closed_ = false;
  // Under mu_:
  uint64_t credit_ = 0;
  uint64_t outstanding_ = 0;  // announced (or about to be), not yet credited back
  const bool announce_first_;
  std::vector<uint8_t> inbound_;
  size_t inbound_head_ = 0;
};

// The target's end: receive() through the reader, send() as BYTES frames.
class BulkTargetLink final : public BulkLinkBase {
 public:
  BulkTargetLink(UniqueFd socket, LinkPipes pipes, std::unique_ptr<BulkReader> reader, std::string peer,
                 BulkLinkOptions options)
      : BulkLinkBase(std::move(socket), std::move(pipes), std::move(peer)),
        reader_(std::move(reader)),
        window_(reader_->window_bytes()),
        options_(options) {
    cancel_ = [this]() -> Status {
      if (interrupted_.load() || shut_.load()) return closed_locally();
      if (peer_gone_.load()) {
        std::lock_guard lock(mu_);
        if (Clock::now() - peer_gone_time_ >= options_.peer_gone_grace) {
          return unavailable("connection to " + peer_ + ": the peer went away in the middle of a piece (" +
                             gone_locked().message() + ")");
        }
      }
      return Status::ok_status();
    };
    start_reader();
  }

  ~BulkTargetLink() override {
    shutdown();
    {
      // The source releases the mover, then closes: only then may the ring be freed.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.release_grace, [&] { return peer_gone_.load(); });
    }
    interrupt();
    stop_reader();
    reader_.reset();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    std::lock_guard call(call_mu_);
    flush_credit(false);
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (interrupted_.load() || shut_.load()) return closed_locally();
        if (!read_broken_.ok()) return read_broken_;
        if (piece_left_ == 0 && !pieces_.empty()) {
          piece_left_ = pieces_.front();
          pieces_.pop_front();
        }
        if (piece_left_ > 0) break;
        if (!reader_error_.ok()) return reader_error_;
        if (peer_eof_) return LinkRead{0, true};
        if (!wait(lock, deadline)) return LinkRead{0, false};
      }
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(capacity, piece_left_));
    auto got = reader_->read(offset_, offset_ + piece_left_, data, want, deadline, cancel_);
    if (!got.ok()) {
      std::lock_guard lock(mu_);
      read_broken_ = got.status();
      return read_broken_;
    }
    if (*got == 0) return LinkRead{0, false};
    offset_ += *got;
    piece_left_ -= *got;
    {
      std::lock_guard lock(mu_);
      unread_ -= *got;
      pending_credit_ += *got;
    }
    flush_credit(false);
    return LinkRead{*got, false};
  }

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    std::lock_guard lock(send_mu_);
    if (interrupted_.load() || shut_.load()) return closed_locally();
    if (peer_gone_.load()) {
      std::lock_guard l(mu_);
      return gone_locked();
    }
    flush_credit(true);
    while (n > 0) {
      const size_t k = std::min(n, kMaxBulkBytesFrame);
      HOTSWAP_RETURN_IF_ERROR(send_frame_locked({BulkFrameType::kBytes, k}, data, k, deadline));
      data += k;
      n -= k;
    }
    flush_credit(true);
    return Status::ok_status();
  }

  void shutdown() override {
    shut_.store(true);
    {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
    // Only our sending side: the reader keeps reading, to see the source's EOF.
    (void)::shutdown(socket_.get(), SHUT_WR);
  }

 private:
  // Sends the credit owed, unless another thread is sending (it sends the credit with its bytes).
  void flush_credit(bool holding_send_mu) {
    std::unique_lock send_lock(send_mu_, std::defer_lock);
    if (!holding_send_mu && !send_lock.try_lock()) return;
    uint64_t credit = 0;
    {
      std::lock_guard lock(mu_);
      credit = pending_credit_;
      pending_credit_ = 0;
    }
    if (credit == 0) return;
    // Its own deadline, not the caller's: a receive() whose time is up must not break the link
    // for want of room for 16 bytes. On failure the socket is broken (send_broken_): the source
    // sees that or the EOF.
    (void)send_frame_locked({BulkFrameType::kCredit, credit}, nullptr, 0, deadline_after(kCreditSendTimeout));
  }

  Status on_frame(const BulkFrame& frame) override {
    std::lock_guard lock(mu_);
    if (frame.type != BulkFrameType::kData) {
      return protocol_error(std::string("a ") + frame_name(frame.type) + " frame from the source");
    }
    if (frame.value == 0 || frame.value > window_ - unread_) {
      return protocol_error("DATA of " + std::to_string(frame.value) + " bytes with " + std::to_string(unread_) +
                            " of a " + std::to_string(window_) + "-byte window unread");
    }
    pieces_.push_back(frame.value);
    unread_ += frame.value;
    cv_.notify_all();
    return Status::ok_status();
  }

  std::unique_ptr<BulkReader> reader_;
  BulkCancel cancel_;
  const uint64_t window_;
  const BulkLinkOptions options_;
  std::mutex call_mu_;  // one receive() at a time
  uint64_t offset_ = 0;
  uint64_t piece_left_ = 0;
  // Under mu_:
  Status read_broken_;
  std::deque<uint64_t> pieces_;  // announced, not started
  uint64_t unread_ = 0;          // announced and not read (pieces_ and piece_left_)
  uint64_t pending_credit_ = 0;
};

}  // namespace

std::array<uint8_t, kBulkFrameBytes> encode_bulk_frame(const BulkFrame& frame) {
  std::array<uint8_t, kBulkFrameBytes> out{};
  std::memcpy(out.data(), kBulkFrameMagic, 4);
  put_le16(out.data() + 4, static_cast<uint16_t>(frame.type));
  put_le16(out.data() + 6, 0);
  put_le64(out.data() + 8, frame.value);
  return out;
}

StatusOr<BulkFrame> decode_bulk_frame(const uint8_t* bytes) {
  if (std::memcmp(bytes, kBulkFrameMagic, 4) != 0) return data_loss("a frame without its magic \"HSBK\"");
  const uint16_t type = get_le16(bytes + 4);
  if (type < static_cast<uint16_t>(BulkFrameType::kData) || type > static_cast<uint16_t>(BulkFrameType::kBytes)) {
    return data_loss("a frame of unknown type " + std::to_string(type));
  }
  BulkFrame f;
  f.type = static_cast<BulkFrameType>(type);
  f.value = get_le64(bytes + 8);
  if (f.type == BulkFrameType::kBytes && f.value > kMaxBulkBytesFrame) {
    return data_loss("a BYTES frame of " + std::to_string(f.value) + " bytes, over the limit of " +
                     std::to_string(kMaxBulkBytesFrame));
  }
  return f;
}

StatusOr<std::unique_ptr<ByteLink>> make_bulk_source_link(UniqueFd socket, std::unique_ptr<BulkWriter> writer,
                                                          std::string peer) {
  if (!writer || writer->window_bytes() == 0)
    return invalid_argument("a bulk source link needs a writer with a window");
  auto pipes = make_link_pipes(peer);
  if (!pipes.ok()) return pipes.status();
  return std::unique_ptr<ByteLink>(std::make_unique<BulkSourceLink>(std::move(socket), std::move(pipes).value(),
                                                                    std::move(writer), std::move(peer)));
}

StatusOr<std::unique_ptr<ByteLink>> make_bulk_target_link(UniqueFd socket, std::unique_ptr<BulkReader> reader,
                                                          std::string peer, BulkLinkOptions options) {
  if (!reader || reader->window_bytes() == 0)
    return invalid_argument("a bulk target link needs a reader with a window");
  auto pipes = make_link_pipes(peer);
  if (!pipes.ok()) return pipes.status();
  return std::unique_ptr<ByteLink>(std::make_unique<BulkTargetLink>(std::move(socket), std::move(pipes).value(),
                                                                    std::move(reader), std::move(peer), options));
}

Status receive_exactly(int fd, uint8_t* data, size_t n, Deadline deadline, const std::string& peer,
                       const std::string& what) {
  size_t have = 0;
  while (have < n) {
    HOTSWAP_ASSIGN_OR_RETURN(LinkRead r, receive_some(fd, data + have, n - have, deadline, -1, peer));
    if (r.eof) {
      return unavailable(peer + " closed the connection during " + what + " (" + std::to_string(have) + " of " +
                         std::to_string(n) + " bytes came)");
    }
    if (r.bytes == 0) return unavailable("timed out waiting for " + what + " from " + peer);
    have += r.bytes;
  }
  return Status::ok_status();
}

Status send_handshake_status(int fd, const char (&magic)[4], uint16_t version, const Status& status, Deadline deadline,
                             const std::string& peer) {
  const std::string text = status.message().substr(0, kMaxHandshakeStatusText);
  std::vector<uint8_t> out(kHandshakeStatusHeaderBytes);
  std::memcpy(out.data(), magic, 4);
  put_le16(out.data() + 4, version);
  put_le16(out.data() + 6, static_cast<uint16_t>(status.code()));
  put_le32(out.data() + 8, static_cast<uint32_t>(text.size()));
  out.insert(out.end(), text.begin(), text.end());
  return send_all(fd, out.data(), out.size(), deadline, -1, peer);
}

Status receive_handshake_status(int fd, const char (&magic)[4], uint16_t version, Deadline deadline,
                                const std::string& peer, const std::string& what, Status* peer_status) {
  uint8_t head[kHandshakeStatusHeaderBytes];
  HOTSWAP_RETURN_IF_ERROR(receive_exactly(fd, head, sizeof head, deadline, peer, what));
  if (std::memcmp(head, magic, 4) != 0 || get_le16(head + 4) != version) {
    return data_loss(peer + " sent something other than " + what + " (magic or version differ)");
  }
  const uint16_t code = get_le16(head + 6);
  const uint32_t length = get_le32(head + 8);
  if (length > kMaxHandshakeStatusText) {
    return data_loss(peer + " sent " + what + " of " + std::to_string(length) + " bytes, over the limit of " +
                     std::to_string(kMaxHandshakeStatusText));
  }
  std::string text(length, '\0');
  HOTSWAP_RETURN_IF_ERROR(receive_exactly(fd, reinterpret_cast<uint8_t*>(text.data()), length, deadline, peer, what));
  if (code == 0) {
    *peer_status = Status::ok_status();
  } else {
    const bool known = code <= static_cast<uint16_t>(StatusCode::kInternal);
    *peer_status = Status(known ? static_cast<StatusCode>(code) : StatusCode::kUnavailable, std::move(text));
  }
  return Status::ok_status();
}

}  // namespace hotswap::migration
