// A small, complete snapshot stream for the migration tests, with the byte range of each chunk.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/migration/crc32c.h"
#include "agent/migration/snapshot.h"
#include "agent/migration/snapshot_decoder.h"

namespace hotswap::migration::testing {

// 2 layers, 2 KV heads, head_dim 4, 4 positions per block, f16: 256-byte blocks.
inline kernels::KvLayout small_layout() {
  kernels::KvLayout l;
  l.n_layers = 2;
  l.n_kv_heads = 2;
  l.head_dim = 4;
  l.block_size = 4;
  l.dtype = kernels::DType::kF16;
  return l;
}

inline Manifest sample_manifest() {
  Manifest m;
  m.migration_id = "mig-0001";
  m.source = "replica-0@127.0.1.5:8080";
  m.model_digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  m.architecture = "LlamaForCausalLM";
  m.weight_dtype = kernels::DType::kBF16;
  m.kv_layout = small_layout();
  m.created_unix_ms = 1700000000123;
  return m;
}

// A running sequence with `position` tokens of KV (blocks of 4 positions).
inline SequenceState sample_sequence(const std::string& id, int64_t position) {
  SequenceState s;
  s.request_id = id;
  s.prompt = {1, 2, 3, 4, 5};
  for (int64_t t = static_cast<int64_t>(s.prompt.size()); t < position + 1; ++t) s.generated.push_back(100 + t);
  s.position = position;
  s.sampling = {0.7, 0.9, 40, 0xFEDCBA9876543210ull};
  s.stop = {64, {"</s>", "\n\n"}, {2, 7}, false};
  // Text that ends inside a UTF-8 character ("€" is e2 82 ac) and holds a NUL and 0xff.
  s.stream = {3, 5, std::string("Hi \x00!\xff\xe2\x82", 8)};
  s.params = {{"endpoint", "/v1/completions"}, {"model", "tiny"}, {"stream", true}, {"n", 1}};
  s.kv_blocks = (position + 3) / 4;
  return s;
}

inline QueuedRequest sample_queued(const std::string& id) {
  QueuedRequest q = sample_sequence(id, 0);
  q.generated.clear();
  q.stream = {-1, 0, ""};
  return q;
}

// Deterministic block bytes: block b of request r.
inline std::vector<uint8_t> block_bytes_for(char request, int64_t block, size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(request * 31 + block * 7 + i);
  return v;
}

struct SampleStream {
  std::string bytes;
  std::vector<size_t> chunk_starts;  // chunk i is bytes[chunk_starts[i], chunk_starts[i + 1])
  std::vector<ChunkKind> kinds;
  std::vector<std::vector<uint8_t>> pool;  // keeps the KV bytes the KvBlocks chunks point at

  size_t chunk_count() const { return kinds.size(); }
  size_t start(size_t i) const { return chunk_starts[i]; }
  size_t end(size_t i) const { return i + 1 < chunk_starts.size() ? chunk_starts[i + 1] : bytes.size(); }
  std::string chunk(size_t i) const { return bytes.substr(start(i), end(i) - start(i)); }
};

// Manifest; seq-a (position 7: 2 blocks) and seq-b (position 9: 3 blocks) with their blocks in
// round 0; seq-a's block 1 again in round 1; one queued request; End.
//   0 Manifest, 1 SequenceState a, 2 KvBlocks a[0..1], 3 SequenceState b, 4 KvBlocks b[0..2],
//   5 KvBlocks a[1] round 1, 6 QueuedRequest q, 7 End
inline SampleStream sample_stream() {
  SampleStream s;
  SnapshotWriter w(&s.bytes);
  const size_t bb = small_layout().block_bytes();
  auto mark = [&](ChunkKind k) {
    s.chunk_starts.push_back(w.bytes_written());
    s.kinds.push_back(k);
  };
  auto blocks = [&](const std::string& id, int64_t first, int64_t count, int64_t round) {
    std::vector<uint8_t> data;
    for (int64_t b = first; b < first + count; ++b) {
      auto v = block_bytes_for(id.back(), b + round * 100, bb);
      data.insert(data.end(), v.begin(), v.end());
    }
    s.pool.push_back(std::move(data));
    KvBlocks k;
    k.request_id = id;
    k.first_block = first;
    k.count = count;
    k.round = round;
    k.block_bytes = bb;
    k.data = s.pool.back();
    return k;
  };
  s.pool.reserve(8);
  mark(ChunkKind::kManifest);
  EXPECT_TRUE(w.write_manifest(sample_manifest()).ok());
  mark(ChunkKind::kSequenceState);
  EXPECT_TRUE(w.write_sequence_state(sample_sequence("seq-a", 7)).ok());
  mark(ChunkKind::kKvBlocks);
  EXPECT_TRUE(w.write_kv_blocks(blocks("seq-a", 0, 2, 0)).ok());
  mark(ChunkKind::kSequenceState);
  EXPECT_TRUE(w.write_sequence_state(sample_sequence("seq-b", 9)).ok());
  mark(ChunkKind::kKvBlocks);
  EXPECT_TRUE(w.write_kv_blocks(blocks("seq-b", 0, 3, 0)).ok());
  mark(ChunkKind::kKvBlocks);
  EXPECT_TRUE(w.write_kv_blocks(blocks("seq-a", 1, 1, 1)).ok());
  mark(ChunkKind::kQueuedRequest);
  EXPECT_TRUE(w.write_queued_request(sample_queued("queued-1")).ok());
  mark(ChunkKind::kEnd);
  EXPECT_TRUE(w.write_end().ok());
  return s;
}

// One framed chunk with a correct header and payload CRC.
inline std::string frame(ChunkKind kind, uint64_t sequence, std::span<const uint8_t> payload,
                         uint16_t version = kSnapshotFormatVersion) {
  ChunkHeader h;
  h.version = version;
  h.kind = static_cast<uint16_t>(kind);
  h.sequence = sequence;
  h.payload_bytes = static_cast<uint32_t>(payload.size());
  h.payload_crc32c = crc32c(payload.data(), payload.size());
  const auto header = encode_chunk_header(h);
  std::string out(reinterpret_cast<const char*>(header.data()), header.size());
  out.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  return out;
}

inline std::string frame(ChunkKind kind, uint64_t sequence, const std::string& payload) {
  return frame(kind, sequence, byte_span(payload));
}

// Feeds everything, then finishes; the first error.
inline Status decode_all(SnapshotDecoder& d, const std::string& bytes) {
  HOTSWAP_RETURN_IF_ERROR(d.feed(byte_span(bytes)));
  return d.finish();
}

inline std::vector<DecodedChunk> drain(SnapshotDecoder& d) {
  std::vector<DecodedChunk> out;
  while (auto c = d.next()) out.push_back(std::move(*c));
  return out;
}

}  // namespace hotswap::migration::testing
