// The migration snapshot stream: versioned, checksummed chunks (docs/snapshot-format.md).
//
// A migration sends one stream from the source agent to the target: a Manifest, then for each
// running sequence its SequenceState and the KvBlocks that carry its KV cache (pre-copy sends
// blocks in rounds, resending dirty ones), the QueuedRequests, and an End that counts what came.
// Each chunk is a 32-byte little-endian frame header and a payload:
//
//   off  0  magic "HSWP"
//   off  4  u16 format version (kSnapshotFormatVersion)
//   off  6  u16 kind (ChunkKind)
//   off  8  u64 chunk sequence number: 0, 1, 2, ... within a stream
//   off 16  u32 payload length (at most kMaxChunkPayloadBytes)
//   off 20  u32 CRC32C of the payload
//   off 24  u32 CRC32C of header bytes 0..23
//   off 28  u32 reserved, zero
//
// SnapshotWriter frames chunks and numbers them; SnapshotDecoder (snapshot_decoder.h) checks
// them. Threads: a writer is used by one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>

#include "agent/migration/snapshot_payloads.h"
#include "common/status.h"

namespace hotswap::migration {

inline constexpr char kSnapshotMagic[4] = {'H', 'S', 'W', 'P'};
inline constexpr uint16_t kSnapshotFormatVersion = 1;
inline constexpr size_t kChunkHeaderBytes = 32;
// JSON payloads are small (a sequence's token ids and text): a tighter cap bounds what a
// hostile JSON chunk can make the decoder allocate.
inline constexpr uint32_t kMaxJsonPayloadBytes = 16u << 20;

enum class ChunkKind : uint16_t {
  kManifest = 1,
  kSequenceState = 2,
  kKvBlocks = 3,
  kQueuedRequest = 4,
  kEnd = 5,
};

// "Manifest", "SequenceState", "KvBlocks", "QueuedRequest", "End"; "kind N" for others.
std::string chunk_kind_name(uint16_t kind);
inline std::string chunk_kind_name(ChunkKind kind) {
  return chunk_kind_name(static_cast<uint16_t>(kind));
}
bool is_known_chunk_kind(uint16_t kind);
// kMaxJsonPayloadBytes for JSON kinds, kMaxChunkPayloadBytes for KvBlocks.
uint32_t max_payload_bytes(ChunkKind kind);

// The fields of a frame header (the two CRCs' positions are fixed by the format).
struct ChunkHeader {
  uint16_t version = kSnapshotFormatVersion;
  uint16_t kind = 0;  // a ChunkKind value
  uint64_t sequence = 0;
  uint32_t payload_bytes = 0;
  uint32_t payload_crc32c = 0;
};

// The 32 header bytes: the fields, the CRC32C of bytes 0..23, and the reserved zero.
std::array<uint8_t, kChunkHeaderBytes> encode_chunk_header(const ChunkHeader& header);

// Who keeps a chunk's later payload pieces alive. When owner is set, pieces[first_owned..] stay
// valid and unchanged while it lives; the pieces before first_owned are the caller's only for
// the call. Empty: every piece is the caller's only for the call.
struct PieceOwner {
  std::shared_ptr<const void> owner;
  size_t first_owned = 0;
};

// Appends framed chunks to a string, or hands them to a sink (a socket, a shared-memory ring).
//
// Every chunk starts at the beginning of a sink call (header first), so a sink that keeps what
// it sent can find chunk boundaries. A KvBlocks chunk reaches the sink in pieces: the frame
// header with the sub-header, then the block bytes straight from the caller's memory (no
// copy). The first sink error is sticky: the stream is broken, and every later write returns
// it. Errors from encoding a payload write nothing and leave the stream usable.
//
// A ChunkSink takes whole chunks instead of bytes: the header with its payload CRC32C not yet
// set (0), and the payload as pieces. It copies the pieces into its own memory, computing their
// CRC32C on the way (crc32c_copy: the caller's memory is read once), then frames the chunk with
// encode_chunk_header(). A transport that keeps chunks for resending takes this form. Pieces a
// PieceOwner holds (a KvBlocks chunk's block bytes, given with KvBlocks::owner) it may keep by
// reference instead: they stay valid and unchanged while the owner lives.
//
// The writer does not check order rules or payload ranges; SnapshotDecoder does.
class SnapshotWriter {
 public:
  // Called on the writer's thread; it must be done with data (sent or copied) when it returns.
  using Sink = std::function<Status(const uint8_t* data, size_t n)>;
  using ChunkSink = std::function<Status(const ChunkHeader& header,
                                         std::span<const std::span<const uint8_t>> payload_pieces, const PieceOwner& owner)>;

  explicit SnapshotWriter(std::string* out);
  explicit SnapshotWriter(Sink sink);
  explicit SnapshotWriter(ChunkSink sink);

  Status write_manifest(const Manifest& manifest);
  Status write_sequence_state(const SequenceState& state);
  Status write_queued_request(const QueuedRequest& request);
  // blocks.data holds the count * block_bytes bytes (a run of contiguous blocks).
  Status write_kv_blocks(const KvBlocks& blocks);
  // Gather form for a paged pool: blocks.data is ignored; block_data[i] points at the
  // block_bytes bytes of logical block first_block + i (block_data.size() == count).
  Status write_kv_blocks(const KvBlocks& blocks, std::span<const uint8_t* const> block_data);
  // The End chunk, with the counts of what this writer wrote.
  Status write_end();
  // Any payload, framed as `kind` with the next sequence number; not counted for End.
  Status write_chunk(ChunkKind kind, std::span<const uint8_t> payload);

  // What write_end() would send now.
  End totals() const;
  uint64_t next_sequence() const { return next_sequence_; }
  uint64_t bytes_written() const { return bytes_written_; }
  const Status& status() const { return status_; }

 private:
  // Writes header + the concatenation of pieces as one chunk.
  Status emit(ChunkKind kind, std::span<const std::span<const uint8_t>> pieces, const PieceOwner& owner = {});
  Status put(const uint8_t* data, size_t n);

  std::string* out_ = nullptr;
  Sink sink_;
  ChunkSink chunk_sink_;
  uint64_t next_sequence_ = 0;
  uint64_t bytes_written_ = 0;
  Status status_;
  std::set<std::string> sequence_ids_;
  End totals_;
};

}  // namespace hotswap::migration
