#include "agent/migration/chunk_stream.h"
#include "agent/migration/little_endian.h"

#include <cstring>
#include <mutex>

namespace hotswap::migration {
namespace {

// Injects FaultInjection's faults into the bytes sent; everything else passes through.
class FaultyLink final : public ByteLink {
 public:
  FaultyLink(std::unique_ptr<ByteLink> inner, FaultInjection fault) : inner_(std::move(inner)), fault_(fault) {}

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    std::lock_guard lock(mu_);
    if (dropped_) return dropped_status();
    size_t allowed = n;
    bool drop = false;
    if (fault_.drop_after_bytes && offset_ + n >= *fault_.drop_after_bytes) {
      allowed = static_cast<size_t>(*fault_.drop_after_bytes - offset_);
      drop = true;
    }
    if (fault_.flip_byte_at && !flipped_ && *fault_.flip_byte_at >= offset_ &&
        *fault_.flip_byte_at < offset_ + allowed) {
      const size_t at = static_cast<size_t>(*fault_.flip_byte_at - offset_);
      HOTSWAP_RETURN_IF_ERROR(inner_->send(data, at, deadline));
      const uint8_t flipped = data[at] ^ 0xff;
      HOTSWAP_RETURN_IF_ERROR(inner_->send(&flipped, 1, deadline));
      HOTSWAP_RETURN_IF_ERROR(inner_->send(data + at + 1, allowed - at - 1, deadline));
      flipped_ = true;
    } else {
      HOTSWAP_RETURN_IF_ERROR(inner_->send(data, allowed, deadline));
    }
    offset_ += allowed;
    if (drop) {
      dropped_ = true;
      inner_->shutdown();
      return dropped_status();
    }
    return Status::ok_status();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    return inner_->receive(data, capacity, deadline);
  }
  void interrupt() override { inner_->interrupt(); }
  void shutdown() override { inner_->shutdown(); }
  std::string peer() const override { return inner_->peer(); }

 private:
  Status dropped_status() const {
    return unavailable("fault injection dropped the connection to " + inner_->peer() + " after " +
                       std::to_string(*fault_.drop_after_bytes) + " bytes");
  }

  std::unique_ptr<ByteLink> inner_;
  const FaultInjection fault_;
  std::mutex mu_;  // send() runs on one thread; the lock keeps the counters honest regardless
  uint64_t offset_ = 0;
  bool flipped_ = false;
  bool dropped_ = false;
};

}  // namespace

std::array<uint8_t, kControlHeaderBytes> encode_control_header(const ControlHeader& header) {
  std::array<uint8_t, kControlHeaderBytes> out{};
  std::memcpy(out.data(), kControlMagic, 4);
  put_le16(out.data() + 4, static_cast<uint16_t>(header.type));
  put_le16(out.data() + 6, header.code);
  put_le64(out.data() + 8, header.value);
  return out;
}

StatusOr<ControlHeader> decode_control_header(const uint8_t* bytes) {
  if (std::memcmp(bytes, kControlMagic, 4) != 0) {
    return data_loss("control message without its magic \"HSCM\": the connection lost its framing");
  }
  const uint16_t type = get_le16(bytes + 4);
  if (type < static_cast<uint16_t>(ControlType::kAck) || type > static_cast<uint16_t>(ControlType::kAbort)) {
    return data_loss("control message of unknown type " + std::to_string(type));
  }
  ControlHeader h;
  h.type = static_cast<ControlType>(type);
  h.code = get_le16(bytes + 6);
  h.value = get_le64(bytes + 8);
  return h;
}

std::unique_ptr<ByteLink> make_faulty_link(std::unique_ptr<ByteLink> inner, FaultInjection fault) {
  return std::make_unique<FaultyLink>(std::move(inner), fault);
}

}  // namespace hotswap::migration
