// The input format of the snapshot decoder fuzz target, shared with its seed corpus generator.
//
//   byte 0     mode: bit 0 resend mode; bits 1-2 how to read the rest (Source); bit 3 renumber
//              the chunks' sequence numbers after mutating (to reach the order rules)
//   bytes 1-4  seed of the feed splits (little-endian)
//   bytes 5-   kRaw: the stream itself. kMutate / kMutateReframe: mutation records applied to a
//              valid stream (base_stream()); kMutateReframe then rewrites every chunk's length
//              and both CRCs, so payload mutations get past the checksums into the decoders.
//
// A mutation record is 5 bytes: op, chunk index, offset (u16 little-endian), value.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "agent/migration/crc32c.h"
#include "agent/migration/snapshot.h"

namespace hotswap::migration::fuzz {

enum class Source : uint8_t { kRaw = 0, kMutate = 1, kMutateReframe = 2 };

enum class MutationOp : uint8_t {
  kFlipBit,
  kSetByte,
  kTruncateChunk,
  kInsertBytes,
  kEraseBytes,
  kDropChunk,
  kDuplicateChunk,
  kSwapWithNext,
  kMoveChunk,
  kCount,
};

inline constexpr size_t kMutationBytes = 5;

// A valid stream, as its chunks: a manifest, two sequences with blocks over two rounds (one
// sent in the gather form), a queued request, End. Small blocks keep inputs small.
inline std::vector<std::string> base_stream() {
  std::string bytes;
  std::vector<size_t> starts;
  SnapshotWriter w(&bytes);
  Manifest m;
  m.migration_id = "fuzz";
  m.source = "src";
  m.model_digest = "00ff";
  m.architecture = "LlamaForCausalLM";
  m.weight_dtype = kernels::DType::kBF16;
  m.kv_layout = {1, 1, 2, 2, kernels::DType::kF16};  // 16-byte blocks
  m.created_unix_ms = 1;
  const uint64_t bb = m.kv_layout.block_bytes();
  auto sequence = [](const std::string& id, int64_t position) {
    SequenceState s;
    s.request_id = id;
    s.prompt = {1, 2, 3};
    s.generated = {4, 5};
    s.position = position;
    s.sampling = {0.5, 0.9, 8, 42};
    s.stop = {16, {"\n"}, {2}, false};
    s.stream = {1, 2, "ab\xe2"};
    s.params = {{"model", "m"}};
    s.kv_blocks = (position + 1) / 2;
    return s;
  };
  std::vector<uint8_t> data(4 * bb);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  const uint8_t* gather[] = {data.data() + 2 * bb, data.data()};
  auto mark = [&] { starts.push_back(bytes.size()); };
  mark();
  (void)w.write_manifest(m);
  mark();
  (void)w.write_sequence_state(sequence("a", 3));
  mark();
  (void)w.write_kv_blocks(KvBlocks{"a", 0, 2, 0, bb, std::span(data).first(2 * bb)});
  mark();
  (void)w.write_sequence_state(sequence("b", 4));
  mark();
  (void)w.write_kv_blocks(KvBlocks{"b", 0, 2, 0, bb, {}}, gather);
  mark();
  (void)w.write_kv_blocks(KvBlocks{"a", 1, 1, 1, bb, std::span(data).first(bb)});
  SequenceState q = sequence("q", 0);
  q.generated.clear();
  q.kv_blocks = 0;
  mark();
  (void)w.write_queued_request(q);
  mark();
  (void)w.write_end();
  std::vector<std::string> chunks;
  for (size_t i = 0; i < starts.size(); ++i) {
    const size_t end = i + 1 < starts.size() ? starts[i + 1] : bytes.size();
    chunks.push_back(bytes.substr(starts[i], end - starts[i]));
  }
  return chunks;
}

inline void put_le32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

inline void apply_mutation(std::vector<std::string>& chunks, const uint8_t* rec) {
  if (chunks.empty()) return;
  const auto op = static_cast<MutationOp>(rec[0] % static_cast<uint8_t>(MutationOp::kCount));
  const size_t c = rec[1] % chunks.size();
  const size_t offset = rec[2] | size_t{rec[3]} << 8;
  const uint8_t value = rec[4];
  std::string& chunk = chunks[c];
  switch (op) {
    case MutationOp::kFlipBit:
      if (!chunk.empty()) chunk[offset % chunk.size()] ^= static_cast<char>(1 << (value & 7));
      break;
    case MutationOp::kSetByte:
      if (!chunk.empty()) chunk[offset % chunk.size()] = static_cast<char>(value);
      break;
    case MutationOp::kTruncateChunk:
      chunk.resize(offset % (chunk.size() + 1));
      break;
    case MutationOp::kInsertBytes:
      chunk.insert(offset % (chunk.size() + 1), value % 17 + 1, static_cast<char>(value));
      break;
    case MutationOp::kEraseBytes:
      if (!chunk.empty()) chunk.erase(offset % chunk.size(), value % 33 + 1);
      break;
    case MutationOp::kDropChunk:
      chunks.erase(chunks.begin() + static_cast<ptrdiff_t>(c));
      break;
    case MutationOp::kDuplicateChunk:
      chunks.insert(chunks.begin() + static_cast<ptrdiff_t>(c), chunk);
      break;
    case MutationOp::kSwapWithNext:
      if (c + 1 < chunks.size()) std::swap(chunks[c], chunks[c + 1]);
      break;
    case MutationOp::kMoveChunk: {
      std::string moved = std::move(chunk);
      chunks.erase(chunks.begin() + static_cast<ptrdiff_t>(c));
      chunks.insert(chunks.begin() + static_cast<ptrdiff_t>(value % (chunks.size() + 1)), std::move(moved));
      break;
    }
    case MutationOp::kCount:
      break;
  }
}

// Makes every chunk's header agree with its bytes again: length, payload CRC, header CRC;
// with renumber, sequence numbers 0, 1, 2, ... too. Chunks shorter than a header stay as they are.
inline void reframe(std::vector<std::string>& chunks, bool renumber) {
  uint64_t seq = 0;
  for (std::string& chunk : chunks) {
    if (chunk.size() < kChunkHeaderBytes) continue;
    if (renumber) {
      for (int i = 0; i < 8; ++i) chunk[8 + i] = static_cast<char>(seq >> (8 * i));
      ++seq;
    }
    put_le32(chunk.data() + 16, static_cast<uint32_t>(chunk.size() - kChunkHeaderBytes));
    put_le32(chunk.data() + 20, crc32c(chunk.data() + kChunkHeaderBytes, chunk.size() - kChunkHeaderBytes));
    put_le32(chunk.data() + 24, crc32c(chunk.data(), 24));
  }
}

struct FuzzCase {
  bool resend = false;
  uint32_t split_seed = 0;
  std::string stream;
};

inline FuzzCase parse_input(const uint8_t* data, size_t size) {
  FuzzCase fc;
  if (size < 5) {
    fc.stream.assign(reinterpret_cast<const char*>(data), size);
    return fc;
  }
  const uint8_t mode = data[0];
  fc.resend = mode & 1;
  const auto source = static_cast<Source>((mode >> 1) & 3);
  const bool renumber = mode & 8;
  fc.split_seed = data[1] | uint32_t{data[2]} << 8 | uint32_t{data[3]} << 16 | uint32_t{data[4]} << 24;
  data += 5;
  size -= 5;
  if (source != Source::kMutate && source != Source::kMutateReframe) {
    fc.stream.assign(reinterpret_cast<const char*>(data), size);
    return fc;
  }
  static const std::vector<std::string> base = base_stream();
  std::vector<std::string> chunks = base;
  for (size_t i = 0; i + kMutationBytes <= size && i < 64 * kMutationBytes; i += kMutationBytes) {
    apply_mutation(chunks, data + i);
  }
  if (source == Source::kMutateReframe || renumber) reframe(chunks, renumber);
  for (const auto& chunk : chunks) fc.stream += chunk;
  return fc;
}

}  // namespace hotswap::migration::fuzz
