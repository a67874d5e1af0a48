// The receiver half of the chunk stream protocol (chunk_stream.h).
#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/little_endian.h"

namespace hotswap::migration {
namespace {

constexpr auto kAbortSendTimeout = std::chrono::seconds(1);
// Outside a payload one receive() takes at most this much: the next chunk's header and the
// start of its payload, which is copied; the payload's rest is received in place.
constexpr size_t kChunkStartReadBytes = 64u << 10;

StatusCode code_or(StatusCode code, StatusCode fallback) {
  return code == StatusCode::kOk ? fallback : code;
}

class StreamChunkReceiver final : public ChunkReceiver {
 public:
  StreamChunkReceiver(std::unique_ptr<ByteLink> link, ReceiverOptions options)
      : link_(std::move(link)),
        options_(options),
        peer_("migration source at " + link_->peer()),
        decoder_(SnapshotDecoder::Options{.resend_corrupt_chunks = true, .max_resends = options.max_resends}),
        buffer_(std::max<size_t>(options.receive_buffer_bytes, 4096)) {}

  ~StreamChunkReceiver() override {
    link_->interrupt();
    link_->shutdown();
  }

  StatusOr<DecodedChunk> next(std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    const Deadline deadline = deadline_after(timeout);
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (aborted_locally_) return broken_;
      }
      if (!ready_.empty()) {
        DecodedChunk chunk = std::move(ready_.front());
        ready_.pop_front();
        if (chunk.kind == ChunkKind::kEnd) end_handed_out_ = true;
        return chunk;
      }
      {
        std::lock_guard lock(mu_);
        if (!broken_.ok()) return broken_;
      }
      if (end_handed_out_) {
        return failed_precondition("the snapshot stream from the " + peer_ + " is over: its End was chunk " +
                                   std::to_string(validated_ - 1));
      }
      // About to wait: a sender with a full window waits for this.
      acknowledge(deadline);
      // Inside a payload the bytes go straight into the decoder's buffer for it; elsewhere into
      // buffer_, a little at a time at a chunk's start so that little of a payload is copied.
      const std::span<uint8_t> space = stage_ == Stage::kPayload ? decoder_.payload_space() : std::span<uint8_t>();
      const bool in_place = !space.empty();
      uint8_t* into = in_place ? space.data() : buffer_.data();
      size_t capacity = in_place ? std::min<size_t>({space.size(), payload_left_, buffer_.size()}) : buffer_.size();
      if (stage_ != Stage::kPayload) capacity = std::min(capacity, kChunkStartReadBytes);
      auto r = link_->receive(into, capacity, deadline);
      if (!r.ok()) {
        return fail(r.status().with_context("reading chunk " + std::to_string(validated_) + " from the " + peer_ +
                                            " (at stream byte " + std::to_string(decoder_.bytes_consumed()) + ")"));
      }
      if (r->eof) return fail(closed_early());
      if (r->bytes == 0) {
        return unavailable("timed out after " + std::to_string(timeout.count()) + " ms waiting for chunk " +
                           std::to_string(validated_) + " from the " + peer_ + " (at stream byte " +
                           std::to_string(decoder_.bytes_consumed()) + ")");
      }
      {
        std::lock_guard lock(mu_);
        bytes_received_ += r->bytes;
      }
      // A failure is recorded in broken_; the chunks that came before it go out first.
      if (in_place) {
        (void)consume_in_place(r->bytes, deadline);
      } else {
        (void)consume(buffer_.data(), r->bytes, deadline);
      }
    }
  }

  Status reply(std::string_view message, std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    {
      std::lock_guard lock(mu_);
      if (!broken_.ok()) return broken_;
    }
    if (!end_validated_) {
      return failed_precondition("reply() before the End chunk came from the " + peer_ +
                                 "; abort() ends a transfer early");
    }
    if (replied_) return failed_precondition("reply() a second time; a transfer has one reply");
    if (message.size() > kMaxReplyBytes) {
      return invalid_argument("a reply of " + std::to_string(message.size()) + " bytes, over the limit of " +
                              std::to_string(kMaxReplyBytes));
    }
    if (!back_channel_.ok()) return fail(back_channel_);
    Status sent = send_control(ControlType::kReply, 0, message, deadline_after(timeout));
    if (!sent.ok()) return fail(sent);
    replied_ = true;
    return Status::ok_status();
  }

  SourceVerdict await_verdict(std::chrono::milliseconds timeout) override {
    std::lock_guard call(call_mu_);
    SourceVerdict v;
    if (!end_validated_) {
      v.detail = "await_verdict() before the End chunk came from the " + peer_;
      return v;
    }
    // A reply that failed to go out (the source closed its side after its ABORT) still leaves
    // the ABORT to read; only a local abort() ends the wait at once.
    const Deadline deadline = deadline_after(timeout);
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (source_aborted_ || aborted_locally_ || stray_after_end_) {
          v.gave_up = source_aborted_;
          v.detail = source_aborted_ ? source_abort_.message() : broken_.message();
          return v;
        }
      }
      auto r = link_->receive(buffer_.data(), std::min(buffer_.size(), kChunkStartReadBytes), deadline);
      if (!r.ok()) {
        v.detail = "reading the verdict of the " + peer_ + ": " + r.status().message();
        return v;
      }
      if (r->eof) {
        v.detail = "the " + peer_ + " closed the connection after the reply: it took the switch (or is gone)";
        return v;
      }
      if (r->bytes == 0) {
        v.detail = "no word from the " + peer_ + " within " + std::to_string(timeout.count()) + " ms of the reply";
        return v;
      }
      // Only an ABORT may come now; anything else is the decoder's error (bytes after End).
      if (!consume(buffer_.data(), r->bytes, deadline).ok()) {
        std::lock_guard lock(mu_);
        stray_after_end_ = !source_aborted_;
      }
    }
  }

  void abort(const Status& reason) override {
    const Status st(code_or(reason.code(), StatusCode::kFailedPrecondition),
                    "transfer aborted locally: " + reason.message());
    {
      std::lock_guard lock(mu_);
      if (aborted_locally_) return;
      aborted_locally_ = true;
      broken_ = st;
    }
    tell_peer(Status(st.code(), reason.message()));
    link_->interrupt();
    link_->shutdown();
  }

  ReceiverStats stats() const override {
    std::lock_guard lock(mu_);
    ReceiverStats s;
    s.bytes_received = bytes_received_;
    s.chunks_received = chunks_received_;
    s.resend_requests = resend_requests_;
    s.acks_sent = acks_sent_;
    return s;
  }

 private:
  // Where the bytes stand between chunks: the source's ABORT may come in place of a chunk.
  enum class Stage { kHeader, kPayload, kControl };

  // Splits the bytes at chunk boundaries and feeds the chunks to the decoder.
  Status consume(const uint8_t* data, size_t n, Deadline deadline) {
    while (n > 0) {
      switch (stage_) {
        case Stage::kPayload: {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(n, payload_left_));
          HOTSWAP_RETURN_IF_ERROR(feed(data, take, deadline));
          payload_left_ -= take;
          data += take;
          n -= take;
          if (payload_left_ == 0) stage_ = Stage::kHeader;
          break;
        }
        case Stage::kHeader: {
          const size_t take = std::min(n, kChunkHeaderBytes - head_have_);
          std::memcpy(head_.data() + head_have_, data, take);
          head_have_ += take;
          data += take;
          n -= take;
          if (head_have_ >= 4 && std::memcmp(head_.data(), kControlMagic, 4) == 0) {
            control_.assign(head_.begin(), head_.begin() + static_cast<std::ptrdiff_t>(head_have_));
            head_have_ = 0;
            stage_ = Stage::kControl;
            HOTSWAP_RETURN_IF_ERROR(on_control_bytes());
            break;
          }
          if (head_have_ < kChunkHeaderBytes) break;
          head_have_ = 0;
          // The decoder checks the header (magic, CRC, limits) before its length is trusted here.
          HOTSWAP_RETURN_IF_ERROR(feed(head_.data(), kChunkHeaderBytes, deadline));
          payload_left_ = get_le32(head_.data() + 16);
          if (payload_left_ > 0) stage_ = Stage::kPayload;
          break;
        }
        case Stage::kControl: {
          const size_t want = control_.size() < kControlHeaderBytes ? kControlHeaderBytes - control_.size()
                                                                    : control_need_ - control_.size();
          const size_t take = std::min(n, want);
          control_.insert(control_.end(), data, data + take);
          data += take;
          n -= take;
          HOTSWAP_RETURN_IF_ERROR(on_control_bytes());
          break;
        }
      }
    }
    acknowledge_if_due(deadline);
    return Status::ok_status();
  }

  // n payload bytes arrived in the decoder's own buffer (payload_space()).
  Status consume_in_place(size_t n, Deadline deadline) {
    Status st = decoder_.commit_payload(n);
    if (!st.ok()) return fail_and_tell(st);
    payload_left_ -= n;
    if (payload_left_ == 0) stage_ = Stage::kHeader;
    HOTSWAP_RETURN_IF_ERROR(take_decoded(deadline));
    acknowledge_if_due(deadline);
    return Status::ok_status();
  }

  void acknowledge_if_due(Deadline deadline) {
    if (end_validated_ || bytes_since_ack_ >= options_.ack_every_bytes ||
        chunks_since_ack_ >= options_.ack_every_chunks) {
      acknowledge(deadline);
    }
  }

  // The source sent a control message where a chunk would start: only ABORT may come this way.
  Status on_control_bytes() {
    if (control_.size() < kControlHeaderBytes) return Status::ok_status();
    auto h = decode_control_header(control_.data());
    if (!h.ok()) return fail_and_tell(h.status());
    if (h->type != ControlType::kAbort) {
      return fail_and_tell(data_loss("protocol error from the " + peer_ + ": control message type " +
                                     std::to_string(static_cast<int>(h->type)) +
                                     " in the stream; only ABORT goes from source to target"));
    }
    if (h->value > kMaxAbortReasonBytes) {
      return fail_and_tell(data_loss("protocol error from the " + peer_ + ": an ABORT of " + std::to_string(h->value) +
                                     " bytes, over the limit of " + std::to_string(kMaxAbortReasonBytes)));
    }
    control_need_ = kControlHeaderBytes + static_cast<size_t>(h->value);
    if (control_.size() < control_need_) return Status::ok_status();
    const std::string reason(reinterpret_cast<const char*>(control_.data()) + kControlHeaderBytes,
                             static_cast<size_t>(h->value));
    const bool known = h->code > 0 && h->code <= static_cast<uint16_t>(StatusCode::kInternal);
    const Status aborted(known ? static_cast<StatusCode>(h->code) : StatusCode::kUnavailable,
                         "the " + peer_ + " aborted the transfer: " + reason);
    {
      std::lock_guard lock(mu_);
      source_aborted_ = true;
      source_abort_ = aborted;
    }
    return fail(aborted);
  }

  Status feed(const uint8_t* data, size_t n, Deadline deadline) {
    Status st = decoder_.feed(data, n);
    if (!st.ok()) return fail_and_tell(st);
    return take_decoded(deadline);
  }

  // Moves the decoder's valid chunks to ready_ and asks for its corrupt ones again.
  Status take_decoded(Deadline deadline) {
    while (auto chunk = decoder_.next()) {
      ++validated_;
      bytes_since_ack_ += kChunkHeaderBytes + chunk->payload.size();
      ++chunks_since_ack_;
      if (chunk->kind == ChunkKind::kEnd) end_validated_ = true;
      ready_.push_back(std::move(*chunk));
      std::lock_guard lock(mu_);
      ++chunks_received_;
    }
    while (auto corrupt = decoder_.take_resend_request()) {
      // Everything before it is valid: acknowledge that first, then go back.
      acknowledge(deadline);
      if (!back_channel_.ok()) continue;
      back_channel_ = send_control(ControlType::kResend, corrupt->sequence, {}, deadline);
      std::lock_guard lock(mu_);
      ++resend_requests_;
    }
    return Status::ok_status();
  }

  // A failed ACK or RESEND does not fail the call: the connection is going, and reading on
  // finds out how (the source's close, with where the stream stopped; its ABORT; a reset).
  void acknowledge(Deadline deadline) {
    if (validated_ == acked_ || !back_channel_.ok()) return;
    back_channel_ = send_control(ControlType::kAck, validated_, {}, deadline);
    if (!back_channel_.ok()) return;
    acked_ = validated_;
    bytes_since_ack_ = 0;
    chunks_since_ack_ = 0;
    std::lock_guard lock(mu_);
    ++acks_sent_;
  }

  Status send_control(ControlType type, uint64_t value, std::string_view text, Deadline deadline) {
    const auto header = encode_control_header({type, 0, type == ControlType::kReply ? text.size() : value});
    std::vector<uint8_t> message(header.begin(), header.end());
    message.insert(message.end(), text.begin(), text.end());
    std::lock_guard send_lock(send_mu_);
    return link_->send(message.data(), message.size(), deadline).with_context("sending to the " + peer_);
  }

  // Sends ABORT once, unless the source is gone or already told.
  void tell_peer(const Status& reason) {
    {
      std::lock_guard lock(mu_);
      if (peer_gone_ || abort_sent_) return;
      abort_sent_ = true;
    }
    const std::string text = reason.message().substr(0, kMaxAbortReasonBytes);
    const auto header = encode_control_header({ControlType::kAbort, static_cast<uint16_t>(reason.code()), text.size()});
    std::vector<uint8_t> message(header.begin(), header.end());
    message.insert(message.end(), text.begin(), text.end());
    std::lock_guard send_lock(send_mu_);
    (void)link_->send(message.data(), message.size(), deadline_after(kAbortSendTimeout));
  }

  // The stream is unusable (the decoder's error, a protocol error): tell the source, and close.
  Status fail_and_tell(const Status& st) {
    Status recorded;
    {
      std::lock_guard lock(mu_);
      if (broken_.ok()) broken_ = st;
      recorded = broken_;
    }
    tell_peer(st);
    link_->shutdown();
    return recorded;
  }

  // The source is gone, aborted, or the link failed.
  Status fail(const Status& st) {
    std::lock_guard lock(mu_);
    peer_gone_ = true;
    if (broken_.ok()) broken_ = st;
    return broken_;
  }

  // The connection ended before End: the decoder says where.
  Status closed_early() {
    std::string where;
    if (stage_ == Stage::kControl) {
      where = "in the middle of a control message (" + std::to_string(control_.size()) + " bytes)";
    } else {
      if (stage_ == Stage::kHeader && head_have_ > 0) (void)decoder_.feed(head_.data(), head_have_);
      Status finished = decoder_.finish();
      where = finished.ok() ? "after the End chunk" : finished.message();
    }
    return unavailable("the " + peer_ + " closed the connection before the stream ended: " + where);
  }

  std::unique_ptr<ByteLink> link_;
  const ReceiverOptions options_;
  const std::string peer_;

  // The owner's state: touched only by a thread that holds call_mu_.
  std::mutex call_mu_;
  SnapshotDecoder decoder_;
  std::vector<uint8_t> buffer_;
  std::deque<DecodedChunk> ready_;
  Stage stage_ = Stage::kHeader;
  std::array<uint8_t, kChunkHeaderBytes> head_{};
  size_t head_have_ = 0;
  uint64_t payload_left_ = 0;
  std::vector<uint8_t> control_;
  size_t control_need_ = kControlHeaderBytes;
  uint64_t validated_ = 0;  // valid chunks decoded: 0..validated_-1
  uint64_t acked_ = 0;      // the last ACK sent
  uint64_t bytes_since_ack_ = 0;
  uint64_t chunks_since_ack_ = 0;
  bool end_validated_ = false;
  bool end_handed_out_ = false;
  bool replied_ = false;
  Status back_channel_;  // the first failed ACK or RESEND

  std::mutex send_mu_;  // one control message at a time (the owner's and abort()'s)

  // Shared with abort() and stats().
  mutable std::mutex mu_;
  Status broken_;
  bool aborted_locally_ = false;
  bool peer_gone_ = false;
  bool abort_sent_ = false;
  bool source_aborted_ = false;  // the source's ABORT came
  Status source_abort_;           // and what it said
  bool stray_after_end_ = false;  // await_verdict() read bytes other than an ABORT
  uint64_t bytes_received_ = 0;
  uint64_t chunks_received_ = 0;
  uint64_t resend_requests_ = 0;
  uint64_t acks_sent_ = 0;
};

}  // namespace

std::unique_ptr<ChunkReceiver> make_stream_receiver(std::unique_ptr<ByteLink> link, ReceiverOptions options) {
  return std::make_unique<StreamChunkReceiver>(std::move(link), options);
}

}  // namespace hotswap::migration
