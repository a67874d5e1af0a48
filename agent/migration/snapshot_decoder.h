// SnapshotDecoder: checks and decodes a snapshot stream (snapshot.h) as its bytes arrive.
//
// feed() takes bytes split anywhere (one at a time included); next() hands out the chunks that
// are complete and valid, in order; finish() says whether the stream ended whole. Checked, in
// this order, for each chunk: magic, format version, header CRC32C, reserved field, kind,
// payload length limit, sequence number (consecutive from 0), payload CRC32C, payload decode,
// and the order rules:
//   - a Manifest first, and only once;
//   - a SequenceState before any KvBlocks of its request id; a later SequenceState of the same
//     id replaces the earlier one (pre-copy re-sends it as the sequence grows); its kv_blocks
//     must be ceil(position / block_size);
//   - KvBlocks: block_bytes equal to the manifest layout's, and blocks inside
//     [0, kv_blocks) of the request's latest SequenceState;
//   - QueuedRequest: position 0, no KV, a request id not used by any other request;
//   - End last: its counts equal what came, and every sequence's blocks [0, kv_blocks) came;
//   - nothing after End.
// Errors: kDataLoss for corruption (bad magic, header or payload CRC, missing/duplicated/
// reordered chunks, truncation), kInvalidArgument for a well-formed chunk that breaks a rule
// or does not decode, kUnimplemented for a format version this build does not read. Messages
// say what and where: "snapshot chunk 7 (KvBlocks) at byte 123456: payload CRC32C 0x1234abcd,
// header says 0x89ef0011". After an error the decoder stays failed: every later feed() and
// finish() returns the same error and next() returns nothing (chunks decoded before the error
// are dropped too; the stream as a whole is unusable).
//
// Resending. With Options::resend_corrupt_chunks, a chunk whose header is sound but whose
// payload fails its CRC does not fail the stream: take_resend_request() returns a
// ChunkCorrupt naming its sequence number, the transport asks the sender for that chunk again,
// and the decoder discards the chunks after it (they were in flight) until chunk N arrives
// again: go-back-N, so the sender replays from chunk N on, with the same sequence numbers. A
// chunk that arrives corrupt more than max_resends times fails the stream. A header CRC failure
// is never resendable: the length can no longer be trusted, so the stream has lost its framing.
//
// In place. While a payload arrives, payload_space() is where its next bytes go, so a transport
// can receive straight into it and commit_payload() them, with no copy; feed() copies into the
// same place.
//
// Memory: the decoder holds one payload at a time (at most kMaxChunkPayloadBytes; its buffer
// is allocated at the header's length but left uninitialized, so a header's claim alone touches
// no page: memory is used as bytes arrive) plus the decoded chunks not yet taken, and per request
// id a small record. Threads: one thread at a time.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "agent/migration/snapshot.h"

namespace hotswap::migration {

// A chunk's payload bytes: one allocation of the header's length, uninitialized until filled.
class PayloadBytes {
 public:
  PayloadBytes() = default;
  explicit PayloadBytes(size_t n) : bytes_(n > 0 ? std::make_unique_for_overwrite<uint8_t[]>(n) : nullptr), size_(n) {}

  uint8_t* data() { return bytes_.get(); }
  const uint8_t* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  operator std::span<const uint8_t>() const { return {data(), size_}; }
  friend bool operator==(const PayloadBytes& a, const PayloadBytes& b) {
    return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data(), b.data(), a.size_) == 0);
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_ = 0;
};

// One valid chunk. Move-only: kv_blocks->data points into payload.
struct DecodedChunk {
  uint64_t sequence = 0;
  ChunkKind kind = ChunkKind::kManifest;
  uint64_t stream_offset = 0;    // byte offset of the chunk's header in the stream
  PayloadBytes payload;  // CRC-checked payload bytes
  // The decoded payload; the one that matches kind is set (kQueuedRequest sets sequence_state).
  std::optional<Manifest> manifest;
  std::optional<SequenceState> sequence_state;
  std::optional<KvBlocks> kv_blocks;  // data is a view into payload, valid while this chunk lives
  std::optional<End> end;

  DecodedChunk() = default;
  DecodedChunk(DecodedChunk&&) = default;
  DecodedChunk& operator=(DecodedChunk&&) = default;
  DecodedChunk(const DecodedChunk&) = delete;
  DecodedChunk& operator=(const DecodedChunk&) = delete;
};

// A chunk whose payload failed its CRC32C, for the transport to ask again (resend mode).
struct ChunkCorrupt {
  uint64_t sequence = 0;
  ChunkKind kind = ChunkKind::kManifest;
  uint64_t stream_offset = 0;
  int attempt = 1;      // 1 the first time this chunk arrived corrupt, 2 the second, ...
  std::string message;  // as the Status would have said it
};

class SnapshotDecoder {
 public:
  struct Options {
    bool resend_corrupt_chunks = false;
    int max_resends = 3;  // per chunk, in resend mode
  };

  SnapshotDecoder() = default;
  explicit SnapshotDecoder(Options options) : options_(options) {}

  Status feed(const uint8_t* data, size_t n);
  Status feed(std::span<const uint8_t> bytes) { return feed(bytes.data(), bytes.size()); }
  // While a payload arrives (not one discarded in resend mode): the space for its remaining
  // bytes, to write up to size() of them and commit_payload(n) them. Empty otherwise, and after
  // an error: feed() then.
  std::span<uint8_t> payload_space();
  // Takes the n bytes written at the start of payload_space() as the payload's next bytes, as
  // feed() of them would. kFailedPrecondition for more than the space holds.
  Status commit_payload(size_t n);
  // The next complete, valid chunk, in stream order.
  std::optional<DecodedChunk> next();
  // In resend mode: the next corrupt chunk to ask for again, oldest first.
  std::optional<ChunkCorrupt> take_resend_request();
  // The stream is over: OK when it ended with a valid End and nothing after it. Errors for a
  // truncated header or payload, a missing End, an empty stream, a chunk awaiting its resend.
  Status finish();

  // The sequence number of the chunk the decoder awaits again, while it discards later ones.
  std::optional<uint64_t> awaiting_resend() const;
  bool ended() const { return end_seen_; }
  uint64_t bytes_consumed() const { return offset_; }
  const Status& status() const { return status_; }
  // The manifest, once chunk 0 is decoded.
  const std::optional<Manifest>& manifest() const { return manifest_; }

 private:
  enum class Stage { kHeader, kPayload, kDiscardPayload, kFinished };

  // Per request id: its latest state's block count and which blocks have come.
  struct RequestRecord {
    bool queued = false;
    bool finished = false;  // a finished SequenceState came: nothing more of it may
    int64_t kv_blocks = 0;
    std::map<int64_t, int64_t> covered;  // [first, end) ranges, disjoint, non-adjacent
  };

  Status fail(Status status);
  std::string where() const;  // "snapshot chunk 7 (KvBlocks) at byte 123: "
  Status on_header();
  Status on_payload();
  Status check_rules(DecodedChunk& chunk);
  Status check_end(const End& end);

  Options options_;
  Status status_;
  Stage stage_ = Stage::kHeader;
  uint64_t offset_ = 0;  // bytes consumed
  std::array<uint8_t, kChunkHeaderBytes> header_bytes_{};
  size_t header_have_ = 0;
  ChunkHeader header_;
  uint64_t chunk_offset_ = 0;  // of the current chunk's header
  PayloadBytes payload_;
  size_t payload_have_ = 0;   // bytes of payload_ filled
  uint32_t payload_crc_ = 0;  // CRC32C of those
  uint64_t payload_left_ = 0;  // kPayload / kDiscardPayload
  uint64_t expected_sequence_ = 0;
  bool awaiting_resend_ = false;
  uint64_t corrupt_sequence_ = 0;  // the last chunk that arrived corrupt
  int corrupt_attempts_ = 0;       // how many times in a row
  std::deque<ChunkCorrupt> resend_requests_;
  std::deque<DecodedChunk> ready_;

  std::optional<Manifest> manifest_;
  bool end_seen_ = false;
  ChunkKind last_kind_ = ChunkKind::kManifest;  // of the last valid chunk
  std::map<std::string, RequestRecord> requests_;
  End seen_;
};

}  // namespace hotswap::migration
