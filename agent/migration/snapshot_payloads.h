// The payloads of the snapshot stream's chunks (docs/snapshot-format.md has the byte layout).
//
// Every struct but KvBlocks is a JSON object: small, self-describing, and decoded strictly
// (every field present with the right type and range; unknown fields are ignored, so a later
// writer may add fields without a version bump). KvBlocks is the bulk of a migration and is
// binary: a small little-endian sub-header, then the block bytes exactly as they lie in the
// KV pool, so a sender can hand the pool's memory to the transport without copying and a
// receiver can read the blocks in place.
//
// Strings (ids, names, stop strings, params) must be valid UTF-8, as anything that came from a
// JSON request is; encode() says which field is not. The bytes of generated text, which may end
// inside a UTF-8 character, travel as base64. encode() checks only what it must to produce
// bytes; decode() checks every range, so a sender's bug surfaces at the receiver with a message.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace hotswap::migration {

// The largest payload of one chunk (the frame's length field allows more; decoders refuse it).
inline constexpr uint32_t kMaxChunkPayloadBytes = 64u << 20;
// Request ids, in SequenceState and in the KvBlocks sub-header.
inline constexpr size_t kMaxRequestIdBytes = 256;
// JSON nesting deeper than this is refused (it bounds the decoder's work on hostile input).
inline constexpr int kMaxJsonDepth = 32;

// Chunk 0 of every stream: what is being migrated, and the KV layout every KvBlocks follows.
struct Manifest {
  std::string migration_id;  // non-empty
  std::string source;        // the sending agent, e.g. "pod/replica-0@10.0.0.7:8080"; non-empty
  std::string model_digest;  // hex digest of the weights; the target checks it against its own
  std::string architecture;  // config.json's architecture, e.g. "LlamaForCausalLM"; non-empty
  kernels::DType weight_dtype = kernels::DType::kF32;
  kernels::KvLayout kv_layout;  // every field >= 1; one block fits in a chunk
  int64_t created_unix_ms = 0;  // >= 0
  // Recompute mode: no KV block follows, only token ids, so a target that runs another version
  // of the model (another digest, even another KV layout) may take the sequences and re-run
  // their prefill. Absent in an older source's manifest: false.
  bool recompute_only = false;

  StatusOr<std::vector<uint8_t>> encode() const;
  static StatusOr<Manifest> decode(std::span<const uint8_t> payload);
  bool operator==(const Manifest&) const = default;
};

struct SamplingState {
  double temperature = 1.0;  // >= 0, finite; 0 is greedy
  double top_p = 1.0;        // (0, 1]
  int32_t top_k = 0;         // >= 0; 0 is no limit
  uint64_t seed = 0;         // the sampler's step is generated.size()
  bool operator==(const SamplingState&) const = default;
};

struct StopState {
  int32_t max_tokens = 16;              // >= 1, >= generated.size()
  std::vector<std::string> stop;        // stop strings
  std::vector<int32_t> stop_token_ids;  // each >= 0
  bool ignore_eos = false;
  bool operator==(const StopState&) const = default;
};

// Where the client's stream stands, so the target continues it without loss or repeat.
struct StreamCursor {
  int64_t last_event_id = -1;      // the last SSE event id sent; -1: none yet
  int64_t text_emitted_bytes = 0;  // bytes of text_bytes already sent; <= text_bytes.size()
  std::string text_bytes;          // the detokenized bytes so far (any bytes; base64 on the wire)
  bool operator==(const StreamCursor&) const = default;
};

// One running sequence. The KvBlocks of request_id that follow it carry the K/V of positions
// 0..position-1, in kv_blocks blocks (ceil(position / block_size), checked by the decoder).
struct SequenceState {
  std::string request_id;          // non-empty, at most kMaxRequestIdBytes
  std::vector<int32_t> prompt;     // non-empty; each >= 0
  std::vector<int32_t> generated;  // each >= 0
  int64_t position = 0;            // tokens whose KV the stream carries; <= prompt + generated
  SamplingState sampling;
  StopState stop;
  StreamCursor stream;
  nlohmann::json params = nlohmann::json::object();  // opaque to migration: the server's own
  int64_t kv_blocks = 0;                             // how many KV blocks the stream carries for it
  // The sequence ended on the source after an earlier SequenceState of it was sent (it finished
  // during pre-copy): the target forgets it. Then position and kv_blocks are 0. Written only
  // when true; a decoder of an older version ignores it (and then fails on the missing blocks).
  bool finished = false;

  StatusOr<std::vector<uint8_t>> encode() const;
  static StatusOr<SequenceState> decode(std::span<const uint8_t> payload);
  bool operator==(const SequenceState&) const = default;
};

// A request that waits in the queue: a SequenceState with position 0 and kv_blocks 0 (no KV
// travels for it). `generated` may be non-empty: a preempted sequence waits to be recomputed.
using QueuedRequest = SequenceState;

// A run of consecutive logical blocks of one sequence, as a view: `data` points at
// count * block_bytes bytes that this struct does not own (the KV pool on the sender, the
// chunk's payload on the receiver). Within a stream a later copy of a block replaces an
// earlier one (pre-copy resends dirty blocks in later rounds).
struct KvBlocks {
  std::string request_id;         // non-empty, at most kMaxRequestIdBytes
  int64_t first_block = 0;        // logical index within the sequence, >= 0
  int64_t count = 0;              // >= 1
  int64_t round = 0;              // pre-copy round, >= 0; the switch-over's blocks are the last
  uint64_t block_bytes = 0;       // == the manifest's kv_layout.block_bytes()
  std::span<const uint8_t> data;  // count * block_bytes bytes
  // When set, data stays valid and unchanged while this lives: a transport with a resend window
  // then keeps a reference to it instead of a copy (SnapshotWriter::ChunkSink).
  std::shared_ptr<const void> owner;

  // The whole payload (sub-header and a copy of data), for small payloads and tests.
  StatusOr<std::vector<uint8_t>> encode() const;
  // data is a view into payload.
  static StatusOr<KvBlocks> decode(std::span<const uint8_t> payload);
};

// KvBlocks' binary sub-header: fixed fields, then the request id, zero-padded to a multiple of 16
// so the block bytes that follow are 16-byte aligned within the payload.
inline constexpr size_t kKvBlocksFixedBytes = 40;
// The sub-header (data ignored but for its size, which must be count * block_bytes or empty):
// a sender writes it, then the pool's block bytes, and has a whole payload without a copy.
StatusOr<std::vector<uint8_t>> encode_kv_blocks_header(const KvBlocks& blocks);
// Size of the sub-header for a request id of this many bytes.
size_t kv_blocks_header_bytes(size_t request_id_bytes);

// The last chunk: what the stream carried, so the receiver knows it has all of it.
struct End {
  int64_t sequences = 0;  // distinct request ids with a SequenceState
  int64_t queued = 0;     // QueuedRequest chunks
  int64_t kv_chunks = 0;  // KvBlocks chunks
  int64_t kv_bytes = 0;   // block bytes in them (sub-headers not counted)

  std::vector<uint8_t> encode() const;
  static StatusOr<End> decode(std::span<const uint8_t> payload);
  bool operator==(const End&) const = default;
};

// Standard base64 (RFC 4648, with padding); decode refuses anything else.
std::string base64_encode(std::span<const uint8_t> bytes);
StatusOr<std::string> base64_decode(std::string_view text);

// A string's bytes as a span, for decode() on payloads held in strings.
inline std::span<const uint8_t> byte_span(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace hotswap::migration
