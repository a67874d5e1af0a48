// The sender half of the chunk stream protocol (chunk_stream.h).
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/crc32c.h"
#include "agent/migration/little_endian.h"

namespace hotswap::migration {
namespace {

constexpr size_t kSendPieceBytes = 1u << 20;
constexpr size_t kSpareBuffers = 4;
// After an idle spell the pacer lets this much time's worth of bytes go at once.
constexpr auto kPacingBurst = std::chrono::milliseconds(10);
// abort() waits this long for a call in progress to leave, so it can send ABORT at a boundary.
constexpr auto kAbortWaitForCall = std::chrono::milliseconds(200);
constexpr auto kAbortSendTimeout = std::chrono::seconds(1);
// A failed send first gives the reader thread this long to say why (an ABORT in flight).
constexpr auto kReaderGrace = std::chrono::milliseconds(200);

std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

StatusCode code_or(StatusCode code, StatusCode fallback) {
  return code == StatusCode::kOk ? fallback : code;
}

class StreamChunkSender final : public ChunkSender {
 public:
  StreamChunkSender(std::unique_ptr<ByteLink> link, SenderOptions options)
      : link_(std::move(link)), options_(options), peer_("migration target at " + link_->peer()) {
    reader_ = std::thread([this] { read_control_messages(); });
  }

  ~StreamChunkSender() override {
    {
      std::lock_guard lock(mu_);
      if (broken_.ok()) broken_ = failed_precondition("the sender was destroyed");
      cv_.notify_all();
    }
    link_->interrupt();
    link_->shutdown();
    reader_.join();
  }

  Status write(const uint8_t* data, size_t n, std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    CallScope scope(*this);
    const Deadline deadline = deadline_after(timeout);
    timeout_ = timeout;
    HOTSWAP_RETURN_IF_ERROR(start_write());
    if (n > 0 && data == nullptr) return invalid_argument("ChunkSender::write() of a null pointer");
    size_t taken = 0;
    bool harmless = false;
    Status st = take(data, n, deadline, taken, harmless);
    std::lock_guard lock(mu_);
    bytes_written_ += taken;
    if (st.ok() || harmless) return st;
    return break_locked(st);
  }

  Status write_chunk(const ChunkHeader& header, std::span<const std::span<const uint8_t>> pieces,
                     std::chrono::milliseconds timeout, const PieceOwner& owner) override {
    std::lock_guard call(call_mu_);
    CallScope scope(*this);
    const Deadline deadline = deadline_after(timeout);
    timeout_ = timeout;
    HOTSWAP_RETURN_IF_ERROR(start_write());
    if (!at_boundary()) {
      return failed_precondition("write_chunk() in the middle of chunk " + std::to_string(next_sequence_) + " (" +
                                 std::to_string(current_ ? current_->filled : header_have_) + " of its bytes written)");
    }
    uint64_t total = 0;
    for (const auto& piece : pieces) {
      if (!piece.empty() && piece.data() == nullptr) return invalid_argument("write_chunk() of a null piece");
      total += piece.size();
    }
    const std::string where = "write_chunk(): chunk " + std::to_string(header.sequence) + ": ";
    if (header.sequence != next_sequence_) {
      return invalid_argument(where + "expected chunk " + std::to_string(next_sequence_));
    }
    if (header.payload_bytes != total) {
      return invalid_argument(where + "the header says " + std::to_string(header.payload_bytes) +
                              " payload bytes, the pieces hold " + std::to_string(total));
    }
    if (total > kMaxChunkPayloadBytes) {
      return invalid_argument(where + "a payload of " + std::to_string(total) + " bytes, over the limit of " +
                              std::to_string(kMaxChunkPayloadBytes));
    }
    bool timed_out = false;
    Status st = before_chunk(deadline, timed_out);
    if (!st.ok()) return timed_out ? st : break_stream(st);
    // The pieces the owner holds are kept by reference (checksummed only); the others copied
    // into the frame behind its header, checksummed on the way.
    const size_t first_owned = owner.owner ? std::min(owner.first_owned, pieces.size()) : pieces.size();
    size_t copied = 0;
    for (size_t i = 0; i < first_owned; ++i) copied += pieces[i].size();
    Frame& f = open_frame(header.sequence, kChunkHeaderBytes + static_cast<size_t>(total), kChunkHeaderBytes + copied);
    ChunkHeader h = header;
    h.payload_crc32c = 0;
    uint8_t* out = f.bytes.get() + kChunkHeaderBytes;
    for (size_t i = 0; i < first_owned; ++i) {
      h.payload_crc32c = crc32c_copy(out, pieces[i].data(), pieces[i].size(), h.payload_crc32c);
      out += pieces[i].size();
    }
    for (size_t i = first_owned; i < pieces.size(); ++i) {
      if (pieces[i].empty()) continue;
      h.payload_crc32c = crc32c_extend(h.payload_crc32c, pieces[i].data(), pieces[i].size());
      f.borrowed.push_back(pieces[i]);
    }
    if (!f.borrowed.empty()) f.owner = owner.owner;
    const auto framed = encode_chunk_header(h);
    std::memcpy(f.bytes.get(), framed.data(), framed.size());
    f.filled = f.size;
    {
      std::lock_guard lock(mu_);
      bytes_written_ += f.size;
      bytes_borrowed_ += f.size - f.owned_size;
    }
    st = after_fill(deadline);
    return st.ok() ? st : break_stream(st);
  }

  Status flush(std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    CallScope scope(*this);
    const Deadline deadline = deadline_after(timeout);
    timeout_ = timeout;
    if (!at_boundary()) {
      return failed_precondition("flush() in the middle of chunk " + std::to_string(next_sequence_) + " (" +
                                 std::to_string(current_ ? current_->filled : header_have_) +
                                 " of its bytes written)");
    }
    for (;;) {
      std::unique_lock lock(mu_);
      if (aborted_locally_) return broken_;
      if (acked_count_ >= frames_complete_) {
        lock.unlock();
        trim_acknowledged();  // every chunk: the window, and what it borrowed, let go now
        return Status::ok_status();
      }
      if (!broken_.ok()) return broken_;
      if (resend_from_) {
        lock.unlock();
        HOTSWAP_RETURN_IF_ERROR(service_resends(deadline));
        continue;
      }
      if (!cv_.wait_until(lock, deadline,
                          [&] { return acked_count_ >= frames_complete_ || resend_from_ || !broken_.ok(); })) {
        return unavailable("timed out after " + ms_text(timeout) +
                           " waiting for acknowledgements: " + std::to_string(acked_count_) + " of " +
                           std::to_string(frames_complete_) + " chunks acknowledged by the " + peer_);
      }
    }
  }

  StatusOr<std::string> await_reply(std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    CallScope scope(*this);
    const Deadline deadline = deadline_after(timeout);
    timeout_ = timeout;
    const bool can_resend = at_boundary();
    for (;;) {
      std::unique_lock lock(mu_);
      if (aborted_locally_) return broken_;
      if (reply_) return *reply_;
      if (!broken_.ok()) return broken_;
      if (can_resend && resend_from_) {
        lock.unlock();
        HOTSWAP_RETURN_IF_ERROR(service_resends(deadline));
        continue;
      }
      if (!cv_.wait_until(lock, deadline, [&] { return reply_ || !broken_.ok() || (can_resend && resend_from_); })) {
        return unavailable("timed out after " + ms_text(timeout) + " waiting for the reply of the " + peer_ + " (" +
                           std::to_string(acked_count_) + " of " + std::to_string(frames_complete_) +
                           " chunks acknowledged)");
      }
    }
  }

  void abort(const Status& reason) override {
    const Status st(code_or(reason.code(), StatusCode::kFailedPrecondition),
                    "transfer aborted locally: " + reason.message());
    bool tell_peer = false;
    {
      std::lock_guard lock(mu_);
      if (aborted_locally_ || committed_) return;
      aborted_locally_ = true;
      tell_peer = !peer_gone_;
      broken_ = st;
      cv_.notify_all();
    }
    // ABORT goes in band, so only between chunks, and only once no call is inside a send: a call
    // blocked on a peer that does not read stays, and then the connection just closes. A call
    // that starts from now on sees broken_ and returns without touching the link or the window.
    if (tell_peer) {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, kAbortWaitForCall, [&] { return calls_in_progress_ == 0; })) {
        lock.unlock();
        if (at_boundary()) {
          std::string reason_text = reason.message().substr(0, kMaxAbortReasonBytes);
          const auto header = encode_control_header(
              {ControlType::kAbort, static_cast<uint16_t>(st.code()), static_cast<uint64_t>(reason_text.size())});
          std::vector<uint8_t> message(header.begin(), header.end());
          message.insert(message.end(), reason_text.begin(), reason_text.end());
          (void)link_->send(message.data(), message.size(), deadline_after(kAbortSendTimeout));
        }
      }
    }
    link_->interrupt();
    link_->shutdown();
  }

  Status commit() override {
    {
      std::lock_guard lock(mu_);
      if (aborted_locally_) return broken_;
      if (!reply_) return failed_precondition("commit() before the reply of the " + peer_);
      if (committed_) return Status::ok_status();
      committed_ = true;
      if (broken_.ok()) broken_ = failed_precondition("the transfer is over: the switch was taken");
      cv_.notify_all();
    }
    link_->interrupt();
    link_->shutdown();
    return Status::ok_status();
  }

  SenderStats stats() const override {
    std::lock_guard lock(mu_);
    SenderStats s;
    s.bytes_written = bytes_written_;
    s.chunks_written = frames_complete_;
    s.chunks_acknowledged = acked_count_;
    s.bytes_acknowledged = acked_count_ > 0 ? frame_ends_[acked_count_ - 1] : 0;
    s.resend_requests = resend_requests_;
    s.chunks_resent = chunks_resent_;
    s.bytes_resent = bytes_resent_;
    s.bytes_sent = bytes_sent_;
    s.bytes_borrowed = bytes_borrowed_;
    if (started_ && acked_count_ > 0) {
      s.wire_seconds = std::chrono::duration<double>(last_ack_time_ - first_write_time_).count();
      if (s.wire_seconds > 0) s.bytes_per_s = static_cast<double>(s.bytes_acknowledged) / s.wire_seconds;
    }
    return s;
  }

 private:
  // Memory for one chunk's bytes, left uninitialized: every byte is written before it is sent.
  struct Buffer {
    std::unique_ptr<uint8_t[]> bytes;
    size_t capacity = 0;
  };

  // A chunk in the window: its first owned_size bytes in `bytes`, the rest (write_chunk() with a
  // PieceOwner) in the owner's memory, `borrowed` in order.
  struct Frame {
    uint64_t sequence = 0;
    uint64_t stream_offset = 0;
    size_t size = 0;    // header + payload
    size_t filled = 0;  // of those, written so far
    size_t owned_size = 0;
    std::unique_ptr<uint8_t[]> bytes;
    size_t capacity = 0;
    std::vector<std::span<const uint8_t>> borrowed;
    std::shared_ptr<const void> owner;
  };

  bool at_boundary() const { return current_ == nullptr && header_have_ == 0; }

  // The start of a write() or write_chunk(): not on a broken transfer; the first starts the clock.
  Status start_write() {
    std::lock_guard lock(mu_);
    if (!broken_.ok()) return broken_;
    if (!started_) {
      started_ = true;
      first_write_time_ = Clock::now();
    }
    return Status::ok_status();
  }

  // Counts an owner's call in progress, for abort().
  class CallScope {
   public:
    explicit CallScope(StreamChunkSender& s) : s_(s) {
      std::lock_guard lock(s_.mu_);
      ++s_.calls_in_progress_;
    }
    ~CallScope() {
      std::lock_guard lock(s_.mu_);
      --s_.calls_in_progress_;
      s_.cv_.notify_all();
    }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

   private:
    StreamChunkSender& s_;
  };

  // Records the first error that breaks the transfer; returns the one recorded.
  Status break_locked(const Status& st) {
    if (broken_.ok()) broken_ = st;
    cv_.notify_all();
    return broken_;
  }
  Status break_stream(const Status& st) {
    std::lock_guard lock(mu_);
    return break_locked(st);
  }

  Status take(const uint8_t* data, size_t n, Deadline deadline, size_t& taken, bool& harmless) {
    while (n > 0) {
      if (current_ == nullptr) {
        if (header_have_ == 0) {
          bool timed_out = false;
          Status st = before_chunk(deadline, timed_out);
          if (!st.ok()) {
            harmless = timed_out && taken == 0;
            return st;
          }
        }
        const size_t c = std::min(n, kChunkHeaderBytes - header_have_);
        std::memcpy(header_.data() + header_have_, data, c);
        header_have_ += c;
        data += c;
        n -= c;
        taken += c;
        if (header_have_ == kChunkHeaderBytes) HOTSWAP_RETURN_IF_ERROR(start_chunk(deadline));
        continue;
      }
      Frame& f = *current_;
      const size_t c = std::min(n, f.size - f.filled);
      std::memcpy(f.bytes.get() + f.filled, data, c);
      f.filled += c;
      data += c;
      n -= c;
      taken += c;
      HOTSWAP_RETURN_IF_ERROR(after_fill(deadline));
    }
    return Status::ok_status();
  }

  // A whole header is in header_: check it and open its chunk in the window.
  Status start_chunk(Deadline deadline) {
    const uint8_t* h = header_.data();
    const std::string where = "write(): stream byte " + std::to_string(stream_offset_) + ": ";
    if (std::memcmp(h, kSnapshotMagic, 4) != 0) {
      return invalid_argument(where + "not a snapshot chunk header (no \"HSWP\" magic)");
    }
    if (get_le32(h + 24) != crc32c(h, 24)) {
      return invalid_argument(where + "chunk header fails its CRC32C");
    }
    const uint64_t sequence = get_le64(h + 8);
    const uint32_t payload_bytes = get_le32(h + 16);
    if (sequence != next_sequence_) {
      return invalid_argument(where + "chunk sequence number " + std::to_string(sequence) + ", expected " +
                              std::to_string(next_sequence_));
    }
    if (payload_bytes > kMaxChunkPayloadBytes) {
      return invalid_argument(where + "chunk " + std::to_string(sequence) + " has a payload of " +
                              std::to_string(payload_bytes) + " bytes, over the limit of " +
                              std::to_string(kMaxChunkPayloadBytes));
    }
    Frame& f = open_frame(sequence, kChunkHeaderBytes + payload_bytes);
    std::memcpy(f.bytes.get(), header_.data(), header_.size());
    f.filled = header_.size();
    header_have_ = 0;
    return after_fill(deadline);
  }

  // Opens chunk `sequence` of `size` bytes in the window, as current_, nothing of it written;
  // the first `owned` of them (default: all) will be in its own buffer.
  Frame& open_frame(uint64_t sequence, size_t size, size_t owned = SIZE_MAX) {
    owned = std::min(owned, size);
    Frame& f = frames_.emplace_back();
    f.sequence = sequence;
    f.stream_offset = stream_offset_;
    f.size = size;
    f.owned_size = owned;
    // A spare is a whole chunk's buffer: wasted on the header or two of a borrowing frame.
    if (owned == size && !spare_.empty() && spare_.back().capacity >= owned) {
      f.bytes = std::move(spare_.back().bytes);
      f.capacity = spare_.back().capacity;
      spare_.pop_back();
    } else {
      f.bytes = std::make_unique_for_overwrite<uint8_t[]>(owned);
      f.capacity = owned;
    }
    retained_bytes_ += f.size;
    current_ = &f;
    current_sent_ = 0;
    return f;
  }

  // Sends what the current chunk gathered, in large pieces; closes the chunk when it is whole.
  Status after_fill(Deadline deadline) {
    Frame& f = *current_;
    const bool whole = f.filled == f.size;
    if (whole) {
      // Before its last byte goes out, so that its ACK always finds it counted.
      std::lock_guard lock(mu_);
      frames_complete_ = f.sequence + 1;
      frame_ends_.push_back(f.stream_offset + f.size);
    }
    if (!f.borrowed.empty()) {
      // write_chunk() hands a frame over whole, nothing of it sent yet.
      HOTSWAP_RETURN_IF_ERROR(send_frame(f, deadline));
      current_sent_ = f.filled;
    } else if (whole || f.filled - current_sent_ >= kSendPieceBytes) {
      HOTSWAP_RETURN_IF_ERROR(send_range(f.bytes.get() + current_sent_, f.filled - current_sent_, deadline));
      current_sent_ = f.filled;
    }
    if (whole) {
      current_ = nullptr;
      current_sent_ = 0;
      stream_offset_ += f.size;
      ++next_sequence_;
    }
    return Status::ok_status();
  }

  // At a chunk boundary: resend what was asked for, then wait for room in the window.
  Status before_chunk(Deadline deadline, bool& timed_out) {
    for (;;) {
      HOTSWAP_RETURN_IF_ERROR(service_resends(deadline));
      trim_acknowledged();
      if (retained_bytes_ < options_.resend_window_bytes) return Status::ok_status();
      std::unique_lock lock(mu_);
      const uint64_t acked = acked_count_;
      if (!cv_.wait_until(lock, deadline, [&] { return acked_count_ != acked || resend_from_ || !broken_.ok(); })) {
        timed_out = true;
        return unavailable("timed out after " + ms_text(timeout_) + " with the resend window full: " +
                           std::to_string(retained_bytes_) + " bytes in " + std::to_string(frames_.size()) +
                           " chunks unacknowledged (window " + std::to_string(options_.resend_window_bytes) +
                           " bytes); the " + peer_ + " is not reading or not keeping up");
      }
      if (!broken_.ok()) return broken_;
    }
  }

  // Drops acknowledged chunks from the window.
  void trim_acknowledged() {
    uint64_t acked = 0;
    {
      std::lock_guard lock(mu_);
      acked = acked_count_;
    }
    while (!frames_.empty() && frames_.front().sequence < acked && &frames_.front() != current_) {
      retained_bytes_ -= frames_.front().size;
      // A frame of borrowed pieces has a buffer of a header or two: not worth a spare's place.
      if (spare_.size() < kSpareBuffers && frames_.front().borrowed.empty())
        spare_.push_back({std::move(frames_.front().bytes), frames_.front().capacity});
      frames_.pop_front();  // and with it the reference to a borrowed payload
    }
  }

  // Go-back-N: sends chunk N and every later whole chunk again; starts over on a newer request.
  Status service_resends(Deadline deadline) {
    for (;;) {
      uint64_t from = 0;
      {
        std::lock_guard lock(mu_);
        if (!broken_.ok()) return broken_;
        if (!resend_from_) return Status::ok_status();
        from = *resend_from_;
        resend_from_.reset();
      }
      trim_acknowledged();
      if (frames_.empty() || from < frames_.front().sequence) {
        return break_stream(data_loss("protocol error from the " + peer_ + ": it asked for chunk " +
                                      std::to_string(from) + " again after acknowledging it"));
      }
      for (size_t i = static_cast<size_t>(from - frames_.front().sequence); i < frames_.size(); ++i) {
        Frame& f = frames_[i];
        if (&f == current_) break;
        {
          std::lock_guard lock(mu_);
          if (resend_from_ || !broken_.ok()) break;
        }
        HOTSWAP_RETURN_IF_ERROR(send_frame(f, deadline));
        std::lock_guard lock(mu_);
        ++chunks_resent_;
        bytes_resent_ += f.size;
      }
    }
  }

  // A whole frame: its own bytes, then its borrowed pieces.
  Status send_frame(const Frame& f, Deadline deadline) {
    HOTSWAP_RETURN_IF_ERROR(send_range(f.bytes.get(), f.owned_size, deadline));
    for (const auto& piece : f.borrowed) HOTSWAP_RETURN_IF_ERROR(send_range(piece.data(), piece.size(), deadline));
    return Status::ok_status();
  }

  Status send_range(const uint8_t* data, size_t n, Deadline deadline) {
    const uint64_t cap = options_.bandwidth_cap_bytes_per_s;
    const size_t piece =
        cap == 0 ? kSendPieceBytes : static_cast<size_t>(std::clamp<uint64_t>(cap / 50, 64u << 10, kSendPieceBytes));
    while (n > 0) {
      const size_t k = std::min(n, piece);
      HOTSWAP_RETURN_IF_ERROR(pace(k, deadline));
      Status st = link_->send(data, k, deadline);
      if (!st.ok()) return on_send_failed(st);
      data += k;
      n -= k;
      std::lock_guard lock(mu_);
      bytes_sent_ += k;
    }
    return Status::ok_status();
  }

  // The link failed under a send. When the target aborted, its ABORT may be just behind (the
  // reader thread is given a moment to find it): that reason is the one to report.
  Status on_send_failed(const Status& st) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, Clock::now() + kReaderGrace, [&] { return reader_done_ || !broken_.ok(); });
    if (aborted_locally_ || peer_aborted_) return broken_;
    broken_ = st.with_context("sending to the " + peer_);
    cv_.notify_all();
    return broken_;
  }

  // Holds bytes back to keep under the bandwidth cap; wakes early only when the transfer breaks.
  Status pace(size_t n, Deadline deadline) {
    const uint64_t cap = options_.bandwidth_cap_bytes_per_s;
    if (cap == 0) return Status::ok_status();
    const Deadline now = Clock::now();
    if (pace_clock_ < now - kPacingBurst) pace_clock_ = now - kPacingBurst;
    pace_clock_ += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(n) / static_cast<double>(cap)));
    if (pace_clock_ <= now) return Status::ok_status();
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, std::min(pace_clock_, deadline), [&] { return !broken_.ok(); });
    if (!broken_.ok()) return broken_;
    if (pace_clock_ > deadline) {
      return break_locked(unavailable("timed out after " + ms_text(timeout_) + ": the bandwidth cap of " +
                                      std::to_string(cap) + " bytes/s does not let the write finish in time"));
    }
    return Status::ok_status();
  }

  // The reader thread: records the target's messages until the connection ends.
  void read_control_messages() {
    std::vector<uint8_t> buffer(64u << 10);
    std::vector<uint8_t> pending;
    for (;;) {
      auto r = link_->receive(buffer.data(), buffer.size(), Deadline::max());
      if (!r.ok()) return reader_failed(r.status().with_context("reading from the " + peer_));
      if (r->eof) return reader_failed(unavailable("the " + peer_ + " closed the connection"));
      pending.insert(pending.end(), buffer.data(), buffer.data() + r->bytes);
      size_t used = 0;
      while (pending.size() - used >= kControlHeaderBytes) {
        auto h = decode_control_header(pending.data() + used);
        if (!h.ok()) return reader_failed(protocol_error(h.status().message()));
        uint64_t text_bytes = 0;
        if (h->type == ControlType::kReply || h->type == ControlType::kAbort) {
          const size_t limit = h->type == ControlType::kReply ? kMaxReplyBytes : kMaxAbortReasonBytes;
          if (h->value > limit) {
            return reader_failed(protocol_error("a " + std::string(h->type == ControlType::kReply ? "REPLY" : "ABORT") +
                                                " of " + std::to_string(h->value) + " bytes, over the limit of " +
                                                std::to_string(limit)));
          }
          text_bytes = h->value;
        }
        if (pending.size() - used < kControlHeaderBytes + text_bytes) break;
        const char* text = reinterpret_cast<const char*>(pending.data() + used + kControlHeaderBytes);
        Status st = on_message(*h, std::string(text, static_cast<size_t>(text_bytes)));
        if (!st.ok()) return reader_failed(st);
        used += kControlHeaderBytes + static_cast<size_t>(text_bytes);
      }
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
    }
  }

  Status protocol_error(const std::string& what) const {
    return data_loss("protocol error from the " + peer_ + ": " + what);
  }

  Status on_message(const ControlHeader& h, std::string text) {
    std::lock_guard lock(mu_);
    switch (h.type) {
      case ControlType::kAck:
        if (h.value < acked_count_ || h.value > frames_complete_) {
          return protocol_error("ACK of " + std::to_string(h.value) + " chunks; " + std::to_string(acked_count_) +
                                " were acknowledged before and " + std::to_string(frames_complete_) + " written");
        }
        acked_count_ = h.value;
        last_ack_time_ = Clock::now();
        break;
      case ControlType::kResend:
        if (h.value < acked_count_ || h.value >= frames_complete_) {
          return protocol_error("RESEND from chunk " + std::to_string(h.value) + "; chunks " +
                                std::to_string(acked_count_) + ".." + std::to_string(frames_complete_) +
                                " (exclusive) are unacknowledged");
        }
        resend_from_ = h.value;
        ++resend_requests_;
        break;
      case ControlType::kReply:
        if (reply_) return protocol_error("a second REPLY");
        reply_ = std::move(text);
        break;
      case ControlType::kAbort: {
        peer_aborted_ = true;
        const bool known = h.code > 0 && h.code <= static_cast<uint16_t>(StatusCode::kInternal);
        return Status(known ? static_cast<StatusCode>(h.code) : StatusCode::kUnavailable,
                      "the " + peer_ + " aborted the transfer: " + text);
      }
    }
    cv_.notify_all();
    return Status::ok_status();
  }

  void reader_failed(const Status& st) {
    {
      std::lock_guard lock(mu_);
      peer_gone_ = true;
      reader_done_ = true;
      (void)break_locked(st);
    }
    link_->interrupt();  // an owner blocked in a send wakes and reports broken_
  }

  std::unique_ptr<ByteLink> link_;
  const SenderOptions options_;
  const std::string peer_;
  std::thread reader_;

  // The owner's state: touched only by a thread that holds call_mu_ (and read by abort() once
  // no call is in progress).
  std::mutex call_mu_;
  std::deque<Frame> frames_;  // the resend window, oldest first; the last may be current_
  // Buffers of acknowledged chunks, reused so that steady streaming does not fault in new pages.
  std::vector<Buffer> spare_;
  Frame* current_ = nullptr;  // the chunk being written, when a write stopped inside one
  size_t current_sent_ = 0;   // of current_'s bytes, those sent
  std::array<uint8_t, kChunkHeaderBytes> header_{};
  size_t header_have_ = 0;  // header bytes gathered before the chunk opens
  uint64_t next_sequence_ = 0;
  uint64_t stream_offset_ = 0;  // of the next chunk
  uint64_t retained_bytes_ = 0;
  Deadline pace_clock_ = Deadline::min();
  std::chrono::milliseconds timeout_{0};  // the current call's, for messages

  // Shared with the reader thread and abort().
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status broken_;
  bool aborted_locally_ = false;
  bool committed_ = false;  // commit(): the connection closed as the source's consent
  bool peer_gone_ = false;
  bool peer_aborted_ = false;
  bool reader_done_ = false;
  bool started_ = false;
  int calls_in_progress_ = 0;
  Deadline first_write_time_;
  Deadline last_ack_time_;
  uint64_t frames_complete_ = 0;      // whole chunks taken: 0..frames_complete_-1
  std::vector<uint64_t> frame_ends_;  // stream offset after chunk i
  uint64_t acked_count_ = 0;
  std::optional<uint64_t> resend_from_;
  std::optional<std::string> reply_;
  uint64_t bytes_written_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_borrowed_ = 0;
  uint64_t resend_requests_ = 0;
  uint64_t chunks_resent_ = 0;
  uint64_t bytes_resent_ = 0;
};

}  // namespace

std::unique_ptr<ChunkSender> make_stream_sender(std::unique_ptr<ByteLink> link, SenderOptions options) {
  if (options.fault.flip_byte_at || options.fault.drop_after_bytes) {
    link = make_faulty_link(std::move(link), options.fault);
  }
  return std::make_unique<StreamChunkSender>(std::move(link), options);
}

}  // namespace hotswap::migration
