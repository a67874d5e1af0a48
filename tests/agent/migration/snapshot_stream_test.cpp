// The snapshot stream end to end: SnapshotWriter's bytes through SnapshotDecoder, whole, split
// every way, and corrupted every way a transport or a buggy sender can corrupt it.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "agent/migration/crc32c.h"
#include "agent/migration/snapshot.h"
#include "agent/migration/snapshot_decoder.h"
#include "tests/agent/migration/snapshot_test_util.h"

namespace hotswap::migration {
namespace {

using testing::decode_all;
using testing::drain;
using testing::frame;
using testing::sample_manifest;
using testing::sample_queued;
using testing::sample_sequence;
using testing::sample_stream;
using testing::SampleStream;
using testing::small_layout;

void expect_error(const Status& st, StatusCode code, const std::string& substring) {
  EXPECT_FALSE(st.ok()) << "expected an error containing: " << substring;
  EXPECT_EQ(st.code(), code) << st.to_string();
  EXPECT_NE(st.message().find(substring), std::string::npos)
      << "message: " << st.message() << "\nexpected to contain: " << substring;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// The chunks of the sample stream as the decoder must hand them out.
// Offsets are positions in the bytes received, which a resend changes.
void expect_sample_chunks(const std::vector<DecodedChunk>& chunks, const SampleStream& s, bool check_offsets = true) {
  ASSERT_EQ(chunks.size(), s.chunk_count());
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].sequence, i);
    EXPECT_EQ(chunks[i].kind, s.kinds[i]);
    if (check_offsets) {
      EXPECT_EQ(chunks[i].stream_offset, s.start(i));
    }
  }
  EXPECT_EQ(*chunks[0].manifest, sample_manifest());
  EXPECT_EQ(*chunks[1].sequence_state, sample_sequence("seq-a", 7));
  EXPECT_EQ(*chunks[3].sequence_state, sample_sequence("seq-b", 9));
  EXPECT_EQ(*chunks[6].sequence_state, sample_queued("queued-1"));
  const KvBlocks& b = *chunks[4].kv_blocks;
  EXPECT_EQ(b.request_id, "seq-b");
  EXPECT_EQ(b.first_block, 0);
  EXPECT_EQ(b.count, 3);
  EXPECT_EQ(std::vector<uint8_t>(b.data.begin(), b.data.end()), s.pool[1]);
  EXPECT_EQ(chunks[5].kv_blocks->round, 1);
  EXPECT_EQ(std::vector<uint8_t>(chunks[5].kv_blocks->data.begin(), chunks[5].kv_blocks->data.end()), s.pool[2]);
  const size_t bb = small_layout().block_bytes();
  EXPECT_EQ(*chunks[7].end, (End{2, 1, 3, static_cast<int64_t>(6 * bb)}));
}

// ---- whole streams ----

TEST(SnapshotStream, WholeStreamRoundTripsInOneFeed) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(decode_all(d, s.bytes).ok()) << d.status().to_string();
  EXPECT_TRUE(d.ended());
  EXPECT_EQ(d.bytes_consumed(), s.bytes.size());
  expect_sample_chunks(drain(d), s);
}

TEST(SnapshotStream, WholeStreamRoundTripsByteByByte) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  std::vector<DecodedChunk> chunks;
  for (char c : s.bytes) {
    const auto b = static_cast<uint8_t>(c);
    ASSERT_TRUE(d.feed(&b, 1).ok()) << d.status().to_string();
    while (auto chunk = d.next()) chunks.push_back(std::move(*chunk));
  }
  ASSERT_TRUE(d.finish().ok());
  expect_sample_chunks(chunks, s);
}

TEST(SnapshotStream, WholeStreamRoundTripsInRandomSplits) {
  const SampleStream s = sample_stream();
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 200; ++trial) {
    SnapshotDecoder d;
    std::vector<DecodedChunk> chunks;
    size_t at = 0;
    while (at < s.bytes.size()) {
      const size_t n = std::min<size_t>(s.bytes.size() - at, rng() % 97);
      ASSERT_TRUE(d.feed(reinterpret_cast<const uint8_t*>(s.bytes.data()) + at, n).ok()) << d.status().to_string();
      at += n;
      while (auto chunk = d.next()) chunks.push_back(std::move(*chunk));
    }
    ASSERT_TRUE(d.finish().ok()) << d.status().to_string();
    expect_sample_chunks(chunks, s);
  }
}

// A transport that receives payload bytes straight into payload_space() and feeds the rest.
TEST(SnapshotStream, WholeStreamRoundTripsWhenPayloadsAreWrittenInPlace) {
  const SampleStream s = sample_stream();
  const auto* bytes = reinterpret_cast<const uint8_t*>(s.bytes.data());
  std::mt19937 rng(7);
  for (int trial = 0; trial < 100; ++trial) {
    SnapshotDecoder d;
    std::vector<DecodedChunk> chunks;
    size_t at = 0;
    size_t in_place = 0;
    while (at < s.bytes.size()) {
      const size_t n = std::min<size_t>(s.bytes.size() - at, 1 + rng() % 97);
      std::span<uint8_t> space = d.payload_space();
      if (!space.empty()) {
        const size_t k = std::min(n, space.size());
        std::memcpy(space.data(), bytes + at, k);
        ASSERT_TRUE(d.commit_payload(k).ok()) << d.status().to_string();
        at += k;
        in_place += k;
      } else {
        ASSERT_TRUE(d.feed(bytes + at, n).ok()) << d.status().to_string();
        at += n;
      }
      while (auto chunk = d.next()) chunks.push_back(std::move(*chunk));
    }
    ASSERT_TRUE(d.finish().ok()) << d.status().to_string();
    expect_sample_chunks(chunks, s);
    EXPECT_GT(in_place, 0u);
  }
}

TEST(SnapshotDecoder, PayloadSpaceIsTheRestOfThePayloadAndNothingElse) {
  const SampleStream s = sample_stream();
  const auto* bytes = reinterpret_cast<const uint8_t*>(s.bytes.data());
  SnapshotDecoder d;
  EXPECT_TRUE(d.payload_space().empty());  // before a header
  EXPECT_EQ(d.commit_payload(1).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(d.status().ok());  // a refused commit breaks nothing
  // Chunk 0's header and 5 payload bytes: the space is the payload's other bytes.
  ASSERT_TRUE(d.feed(bytes, kChunkHeaderBytes + 5).ok());
  const size_t payload0 = s.end(0) - s.start(0) - kChunkHeaderBytes;
  std::span<uint8_t> space = d.payload_space();
  ASSERT_EQ(space.size(), payload0 - 5);
  EXPECT_EQ(d.commit_payload(space.size() + 1).code(), StatusCode::kFailedPrecondition);
  std::memcpy(space.data(), bytes + kChunkHeaderBytes + 5, space.size());
  ASSERT_TRUE(d.commit_payload(space.size()).ok()) << d.status().to_string();
  EXPECT_TRUE(d.payload_space().empty());  // the chunk is whole; the next header comes first
  ASSERT_TRUE(d.next().has_value());
  EXPECT_EQ(d.bytes_consumed(), s.end(0));
}

TEST(SnapshotDecoder, PayloadWrittenInPlaceIsStillCrcChecked) {
  const SampleStream s = sample_stream();
  std::string damaged = s.bytes;
  damaged[s.start(2) + kChunkHeaderBytes + 40] ^= 0x01;
  const auto* bytes = reinterpret_cast<const uint8_t*>(damaged.data());
  SnapshotDecoder d;
  ASSERT_TRUE(d.feed(bytes, s.start(2) + kChunkHeaderBytes).ok());
  std::span<uint8_t> space = d.payload_space();
  ASSERT_EQ(space.size(), s.end(2) - s.start(2) - kChunkHeaderBytes);
  std::memcpy(space.data(), bytes + s.start(2) + kChunkHeaderBytes, space.size());
  Status st = d.commit_payload(space.size());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("snapshot chunk 2 (KvBlocks)"), std::string::npos) << st.message();
  EXPECT_TRUE(d.payload_space().empty());  // failed: nothing more goes in
}

TEST(SnapshotStream, DecodedKvBlocksStayValidWhenTheChunkMoves) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(decode_all(d, s.bytes).ok());
  std::vector<DecodedChunk> chunks = drain(d);
  DecodedChunk moved = std::move(chunks[2]);
  chunks.clear();
  EXPECT_EQ(moved.kv_blocks->data.data(), moved.payload.data() + kv_blocks_header_bytes(5));
  EXPECT_EQ(std::vector<uint8_t>(moved.kv_blocks->data.begin(), moved.kv_blocks->data.end()), s.pool[0]);
}

// ---- the writer ----

// The sample stream's chunks, written through w (its seq-b blocks in the gather form).
void write_sample_chunks(SnapshotWriter& w, const SampleStream& s) {
  const size_t bb = small_layout().block_bytes();
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-a", 7)).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-a", 0, 2, 0, bb, s.pool[0]}).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-b", 9)).ok());
  // Gather form: the three blocks from three places in a "pool".
  const uint8_t* blocks[] = {s.pool[1].data(), s.pool[1].data() + bb, s.pool[1].data() + 2 * bb};
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-b", 0, 3, 0, bb, {}}, blocks).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-a", 1, 1, 1, bb, s.pool[2]}).ok());
  ASSERT_TRUE(w.write_queued_request(sample_queued("queued-1")).ok());
  ASSERT_TRUE(w.write_end().ok());
}

TEST(SnapshotWriter, SinkGetsTheSameBytesAndEachChunkStartsACall) {
  const SampleStream s = sample_stream();
  std::string via_sink;
  std::vector<size_t> call_starts;
  SnapshotWriter w([&](const uint8_t* p, size_t n) {
    call_starts.push_back(via_sink.size());
    via_sink.append(reinterpret_cast<const char*>(p), n);
    return Status::ok_status();
  });
  write_sample_chunks(w, s);
  EXPECT_EQ(via_sink, s.bytes);
  EXPECT_EQ(w.next_sequence(), 8u);
  EXPECT_EQ(w.bytes_written(), s.bytes.size());
  for (size_t i = 0; i < s.chunk_count(); ++i) {
    EXPECT_NE(std::find(call_starts.begin(), call_starts.end(), s.start(i)), call_starts.end()) << "chunk " << i;
  }
}

// A ChunkSink that frames each chunk itself (the way a transport with a resend window does)
// produces the string writer's bytes exactly.
TEST(SnapshotWriter, ChunkSinkGetsWholeChunksThatFrameToTheSameBytes) {
  const SampleStream s = sample_stream();
  std::string framed;
  std::vector<ChunkHeader> headers;
  SnapshotWriter w([&](const ChunkHeader& h, std::span<const std::span<const uint8_t>> pieces, const PieceOwner&) {
    headers.push_back(h);
    std::vector<uint8_t> payload(h.payload_bytes);
    ChunkHeader full = h;
    size_t at = 0;
    for (const auto& piece : pieces) {
      full.payload_crc32c = crc32c_copy(payload.data() + at, piece.data(), piece.size(), full.payload_crc32c);
      at += piece.size();
    }
    EXPECT_EQ(at, h.payload_bytes);
    const auto header = encode_chunk_header(full);
    framed.append(reinterpret_cast<const char*>(header.data()), header.size());
    framed.append(reinterpret_cast<const char*>(payload.data()), payload.size());
    return Status::ok_status();
  });
  write_sample_chunks(w, s);
  EXPECT_EQ(framed, s.bytes);
  EXPECT_EQ(w.bytes_written(), s.bytes.size());
  ASSERT_EQ(headers.size(), s.chunk_count());
  for (size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(headers[i].sequence, i);
    EXPECT_EQ(headers[i].kind, static_cast<uint16_t>(s.kinds[i]));
    EXPECT_EQ(headers[i].payload_crc32c, 0u) << "the sink computes it";
  }
}

// KvBlocks given with an owner reach the sink saying so: the block bytes (the piece after the
// sub-header) are the owner's; every other chunk's pieces are the caller's for the call only.
TEST(SnapshotWriter, ChunkSinkIsToldWhichPiecesAnOwnerHolds) {
  std::vector<PieceOwner> owners;
  std::vector<size_t> piece_counts;
  SnapshotWriter w([&](const ChunkHeader&, std::span<const std::span<const uint8_t>> pieces, const PieceOwner& o) {
    owners.push_back(o);
    piece_counts.push_back(pieces.size());
    return Status::ok_status();
  });
  auto block = std::make_shared<std::vector<uint8_t>>(small_layout().block_bytes(), 7);
  KvBlocks kb;
  kb.request_id = "seq-a";
  kb.count = 1;
  kb.block_bytes = block->size();
  kb.data = std::span<const uint8_t>(*block);
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  ASSERT_TRUE(w.write_kv_blocks(kb).ok());  // no owner
  kb.owner = block;
  ASSERT_TRUE(w.write_kv_blocks(kb).ok());
  ASSERT_EQ(owners.size(), 3u);
  EXPECT_EQ(owners[0].owner, nullptr);
  EXPECT_EQ(owners[1].owner, nullptr);
  EXPECT_EQ(owners[2].owner, block);
  EXPECT_EQ(owners[2].first_owned, 1u);
  EXPECT_EQ(piece_counts[2], 2u);
}

TEST(SnapshotWriter, ChunkSinkErrorIsStickyAndNamesTheChunk) {
  int calls = 0;
  SnapshotWriter w([&](const ChunkHeader&, std::span<const std::span<const uint8_t>>, const PieceOwner&) {
    return ++calls == 2 ? unavailable("window closed") : Status::ok_status();
  });
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  expect_error(w.write_sequence_state(sample_sequence("seq-a", 7)), StatusCode::kUnavailable,
               "snapshot sink, chunk 1: window closed");
  expect_error(w.write_end(), StatusCode::kUnavailable, "window closed");
  EXPECT_EQ(calls, 2);
}

TEST(SnapshotWriter, SinkErrorIsStickyAndNamesTheChunk) {
  int calls = 0;
  SnapshotWriter w(
      [&](const uint8_t*, size_t) { return ++calls == 2 ? unavailable("connection reset") : Status::ok_status(); });
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  Status st = w.write_sequence_state(sample_sequence("seq-a", 7));
  expect_error(st, StatusCode::kUnavailable, "snapshot sink, chunk 1: connection reset");
  expect_error(w.write_end(), StatusCode::kUnavailable, "connection reset");
  EXPECT_EQ(calls, 2);
}

TEST(SnapshotWriter, RefusesKvDataOfTheWrongSizeWithoutWriting) {
  std::string out;
  SnapshotWriter w(&out);
  std::vector<uint8_t> data(100);
  expect_error(w.write_kv_blocks(KvBlocks{"r", 0, 2, 0, 64, data}), StatusCode::kInvalidArgument,
               "data is 100 bytes, 2 blocks of 64 bytes are 128");
  const uint8_t* one[] = {data.data()};
  expect_error(w.write_kv_blocks(KvBlocks{"r", 0, 2, 0, 64, {}}, one), StatusCode::kInvalidArgument,
               "1 block pointers for 2 blocks");
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(w.next_sequence(), 0u);
  EXPECT_TRUE(w.status().ok());
}

TEST(SnapshotWriter, RefusesAPayloadOverTheLimit) {
  std::string out;
  SnapshotWriter w(&out);
  std::vector<uint8_t> big(kMaxJsonPayloadBytes + 1, ' ');
  expect_error(w.write_chunk(ChunkKind::kSequenceState, big), StatusCode::kInvalidArgument,
               "payload of 16777217 bytes exceeds the limit of 16777216");
  EXPECT_TRUE(out.empty());
}

// ---- corruption, truncation, reordering ----

TEST(SnapshotDecoder, FlippedPayloadBitIsDataLossNamingChunkKindOffsetAndChecksums) {
  const SampleStream s = sample_stream();
  std::string bytes = s.bytes;
  const size_t at = s.start(4) + kChunkHeaderBytes + 100;
  bytes[at] ^= 0x10;
  const uint32_t stated =
      crc32c(s.bytes.data() + s.start(4) + kChunkHeaderBytes, s.end(4) - s.start(4) - kChunkHeaderBytes);
  const uint32_t actual =
      crc32c(bytes.data() + s.start(4) + kChunkHeaderBytes, s.end(4) - s.start(4) - kChunkHeaderBytes);
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
               "snapshot chunk 4 (KvBlocks) at byte " + std::to_string(s.start(4)) + ": payload CRC32C " +
                   hex32(actual) + ", header says " + hex32(stated));
}

TEST(SnapshotDecoder, FlippedHeaderBitIsDataLoss) {
  const SampleStream s = sample_stream();
  // Every bit of the sequence, length and CRC fields: the header CRC catches each one.
  for (size_t byte = 8; byte < 28; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bytes = s.bytes;
      bytes[s.start(3) + byte] ^= static_cast<char>(1 << bit);
      SnapshotDecoder d;
      expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
                   "snapshot chunk 3 at byte " + std::to_string(s.start(3)) + ": header CRC32C 0x");
    }
  }
}

TEST(SnapshotDecoder, WrongMagicIsDataLoss) {
  const SampleStream s = sample_stream();
  std::string bytes = s.bytes;
  bytes[0] = 'X';
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
               "snapshot chunk 0 at byte 0: magic 58 53 57 50 (\"XSWP\"), expected 48 53 57 50 (\"HSWP\")");
}

TEST(SnapshotDecoder, FutureVersionIsUnimplementedAndNamesIt) {
  auto manifest = sample_manifest().encode();
  const std::string bytes = frame(ChunkKind::kManifest, 0, *manifest, /*version=*/2);
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kUnimplemented,
               "snapshot chunk 0 at byte 0: snapshot format version 2; this build reads version 1 only");
}

TEST(SnapshotDecoder, TruncationInAHeaderFailsAtFinish) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(0, s.start(5) + 10))).ok());
  expect_error(d.finish(), StatusCode::kDataLoss,
               "snapshot chunk 5 at byte " + std::to_string(s.start(5)) + ": truncated in the header, 10 of 32 bytes");
}

TEST(SnapshotDecoder, TruncationInAPayloadFailsAtFinish) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(0, s.start(4) + kChunkHeaderBytes + 50))).ok());
  const size_t payload = s.end(4) - s.start(4) - kChunkHeaderBytes;
  expect_error(d.finish(), StatusCode::kDataLoss,
               "snapshot chunk 4 (KvBlocks) at byte " + std::to_string(s.start(4)) +
                   ": truncated in the payload, 50 of " + std::to_string(payload) + " bytes");
}

TEST(SnapshotDecoder, StreamWithoutEndFailsAtFinish) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(0, s.start(7)))).ok());
  expect_error(
      d.finish(), StatusCode::kDataLoss,
      "snapshot ended at byte " + std::to_string(s.start(7)) + " after chunk 6 (QueuedRequest) without an End chunk");
}

TEST(SnapshotDecoder, EmptyStreamFailsAtFinish) {
  SnapshotDecoder d;
  expect_error(d.finish(), StatusCode::kDataLoss, "snapshot is empty");
}

TEST(SnapshotDecoder, SwappedChunksAreDataLoss) {
  const SampleStream s = sample_stream();
  const std::string bytes = s.bytes.substr(0, s.start(2)) + s.chunk(3) + s.chunk(2) + s.bytes.substr(s.start(4));
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
               "snapshot chunk 3 (SequenceState) at byte " + std::to_string(s.start(2)) +
                   ": sequence number 3, expected 2: chunk 2 is missing or reordered");
}

TEST(SnapshotDecoder, DuplicatedChunkIsDataLoss) {
  const SampleStream s = sample_stream();
  const std::string bytes = s.bytes.substr(0, s.start(3)) + s.chunk(2) + s.bytes.substr(s.start(3));
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
               "sequence number 2, expected 3: chunk 2 is duplicated or reordered");
}

TEST(SnapshotDecoder, DroppedChunkIsDataLoss) {
  const SampleStream s = sample_stream();
  const std::string bytes = s.bytes.substr(0, s.start(2)) + s.bytes.substr(s.start(4));
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kDataLoss,
               "sequence number 4, expected 2: chunks 2..3 are missing or reordered");
}

TEST(SnapshotDecoder, OversizedLengthIsRefusedFromTheHeaderAlone) {
  ChunkHeader h;
  h.kind = static_cast<uint16_t>(ChunkKind::kKvBlocks);
  h.payload_bytes = kMaxChunkPayloadBytes + 1;
  const auto header = encode_chunk_header(h);
  SnapshotDecoder d;
  expect_error(d.feed(header.data(), header.size()), StatusCode::kInvalidArgument,
               "snapshot chunk 0 (KvBlocks) at byte 0: payload length 67108865 exceeds the limit of 67108864 bytes "
               "for KvBlocks chunks");
  h.kind = static_cast<uint16_t>(ChunkKind::kManifest);
  h.payload_bytes = 0xFFFFFFFFu;
  const auto json_header = encode_chunk_header(h);
  SnapshotDecoder d2;
  expect_error(d2.feed(json_header.data(), json_header.size()), StatusCode::kInvalidArgument,
               "exceeds the limit of 16777216 bytes for Manifest chunks");
}

TEST(SnapshotDecoder, UnknownKindAndNonZeroReservedAreInvalid) {
  const std::string bytes = frame(static_cast<ChunkKind>(9), 0, std::string("{}"));
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument,
               "snapshot chunk 0 (kind 9) at byte 0: unknown chunk kind 9; format version 1 has kinds 1..5");

  std::string reserved = frame(ChunkKind::kManifest, 0, *sample_manifest().encode());
  reserved[28] = 1;
  SnapshotDecoder d2;
  expect_error(decode_all(d2, reserved), StatusCode::kInvalidArgument,
               "reserved header field is 0x00000001, expected 0");
}

// ---- order rules ----

// A stream of the given chunks after a valid Manifest, numbered from 1.
std::string after_manifest(const std::vector<std::pair<ChunkKind, std::vector<uint8_t>>>& chunks) {
  std::string out;
  SnapshotWriter w(&out);
  EXPECT_TRUE(w.write_manifest(sample_manifest()).ok());
  for (const auto& [kind, payload] : chunks) EXPECT_TRUE(w.write_chunk(kind, payload).ok());
  return out;
}

std::vector<uint8_t> kv_payload(const std::string& id, int64_t first, int64_t count, uint64_t block_bytes) {
  std::vector<uint8_t> data(count * block_bytes, 0x5A);
  auto p = KvBlocks{id, first, count, 0, block_bytes, data}.encode();
  EXPECT_TRUE(p.ok());
  return *p;
}

std::vector<uint8_t> seq_payload(const SequenceState& s) {
  return *s.encode();
}

TEST(SnapshotDecoder, ManifestMustComeFirstAndOnce) {
  const std::string not_first = frame(ChunkKind::kEnd, 0, End{}.encode());
  SnapshotDecoder d;
  expect_error(decode_all(d, not_first), StatusCode::kInvalidArgument,
               "snapshot chunk 0 (End) at byte 0: the first chunk must be a Manifest");
  const std::string twice = after_manifest({{ChunkKind::kManifest, *sample_manifest().encode()}});
  SnapshotDecoder d2;
  expect_error(decode_all(d2, twice), StatusCode::kInvalidArgument, "snapshot chunk 1 (Manifest)");
  expect_error(d2.status(), StatusCode::kInvalidArgument, "a second Manifest");
}

TEST(SnapshotDecoder, KvBlocksBeforeItsSequenceStateIsInvalid) {
  const size_t bb = small_layout().block_bytes();
  const std::string bytes = after_manifest({{ChunkKind::kKvBlocks, kv_payload("seq-a", 0, 1, bb)},
                                            {ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 7))}});
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument, "snapshot chunk 1 (KvBlocks) at byte ");
  expect_error(d.status(), StatusCode::kInvalidArgument, "KvBlocks of request 'seq-a' before its SequenceState");
}

TEST(SnapshotDecoder, KvBlocksNotMatchingTheLayoutIsInvalid) {
  const size_t bb = small_layout().block_bytes();
  const std::string bytes = after_manifest({{ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 7))},
                                            {ChunkKind::kKvBlocks, kv_payload("seq-a", 0, 1, bb / 2)}});
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument, "snapshot chunk 2 (KvBlocks) at byte ");
  expect_error(d.status(), StatusCode::kInvalidArgument,
               "blocks of 128 bytes; the manifest's KV layout has blocks of 256");
}

TEST(SnapshotDecoder, KvBlocksLengthNotMatchingItsCountIsInvalid) {
  const size_t bb = small_layout().block_bytes();
  std::vector<uint8_t> payload = kv_payload("seq-a", 0, 2, bb);
  payload.resize(payload.size() - 1);
  const std::string bytes = after_manifest(
      {{ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 7))}, {ChunkKind::kKvBlocks, payload}});
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument, "snapshot chunk 2 (KvBlocks) at byte ");
  expect_error(d.status(), StatusCode::kInvalidArgument,
               "payload carries 511 block bytes, 2 blocks of 256 bytes are 512");
}

TEST(SnapshotDecoder, KvBlocksBeyondTheSequenceIsInvalid) {
  const size_t bb = small_layout().block_bytes();
  const std::string bytes = after_manifest({{ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 7))},
                                            {ChunkKind::kKvBlocks, kv_payload("seq-a", 1, 2, bb)}});
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument,
               "blocks 1..2 of request 'seq-a', which has 2 blocks in its latest SequenceState");
}

TEST(SnapshotDecoder, SequenceStateWhoseBlockCountDisagreesWithItsPositionIsInvalid) {
  SequenceState s = sample_sequence("seq-a", 7);
  s.kv_blocks = 1;
  SnapshotDecoder d;
  expect_error(decode_all(d, after_manifest({{ChunkKind::kSequenceState, seq_payload(s)}})),
               StatusCode::kInvalidArgument, "request 'seq-a' has kv_blocks 1, but position 7 takes 2 blocks of 4");
}

TEST(SnapshotDecoder, QueuedRequestWithKvOrAReusedIdIsInvalid) {
  SnapshotDecoder d;
  expect_error(decode_all(d, after_manifest({{ChunkKind::kQueuedRequest, seq_payload(sample_sequence("q", 7))}})),
               StatusCode::kInvalidArgument, "a QueuedRequest carries no KV");
  SnapshotDecoder d2;
  expect_error(decode_all(d2, after_manifest({{ChunkKind::kSequenceState, seq_payload(sample_sequence("x", 0))},
                                              {ChunkKind::kQueuedRequest, seq_payload(sample_queued("x"))}})),
               StatusCode::kInvalidArgument, "request 'x' already came as a SequenceState");
}

TEST(SnapshotDecoder, EndWithWrongCountsIsInvalid) {
  const SampleStream s = sample_stream();
  const size_t bb = small_layout().block_bytes();
  const std::pair<End, std::string> cases[] = {
      {End{3, 1, 3, static_cast<int64_t>(6 * bb)}, "End counts 3 sequences, the stream carried 2"},
      {End{2, 0, 3, static_cast<int64_t>(6 * bb)}, "End counts 0 queued requests, the stream carried 1"},
      {End{2, 1, 4, static_cast<int64_t>(6 * bb)}, "End counts 4 KvBlocks chunks, the stream carried 3"},
      {End{2, 1, 3, static_cast<int64_t>(6 * bb - 1)}, "End counts 1535 KV bytes, the stream carried 1536"},
  };
  for (const auto& [end, message] : cases) {
    const std::string bytes = s.bytes.substr(0, s.start(7)) + frame(ChunkKind::kEnd, 7, end.encode());
    SnapshotDecoder d;
    expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument,
                 "snapshot chunk 7 (End) at byte " + std::to_string(s.start(7)) + ": " + message);
  }
}

TEST(SnapshotDecoder, EndBeforeEveryBlockCameIsInvalid) {
  std::string bytes;
  SnapshotWriter w(&bytes);
  const size_t bb = small_layout().block_bytes();
  std::vector<uint8_t> data(bb, 1);
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-b", 9)).ok());  // 3 blocks
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-b", 0, 1, 0, bb, data}).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-b", 2, 1, 0, bb, data}).ok());
  ASSERT_TRUE(w.write_end().ok());
  SnapshotDecoder d;
  expect_error(decode_all(d, bytes), StatusCode::kInvalidArgument,
               "request 'seq-b' has 3 KV blocks, but blocks 1..1 never came");
}

TEST(SnapshotDecoder, LaterSequenceStateGrowsTheSequence) {
  // Pre-copy: round 0 sends 2 blocks; the sequence grows to 3 blocks before the switch.
  std::string bytes;
  SnapshotWriter w(&bytes);
  const size_t bb = small_layout().block_bytes();
  std::vector<uint8_t> two(2 * bb, 1), one(bb, 2);
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-a", 7)).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-a", 0, 2, 0, bb, two}).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-a", 9)).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-a", 1, 2, 1, bb, two}).ok());
  ASSERT_TRUE(w.write_end().ok());
  EXPECT_EQ(w.totals(), (End{1, 0, 2, static_cast<int64_t>(4 * bb)}));
  SnapshotDecoder d;
  ASSERT_TRUE(decode_all(d, bytes).ok()) << d.status().to_string();
  EXPECT_EQ(drain(d).size(), 6u);
}

TEST(SnapshotDecoder, FinishedSequenceStateForgetsItsBlocks) {
  // The sequence ended on the source during pre-copy: one of its two blocks came, then a
  // finished state; End does not ask for the rest.
  std::string bytes;
  SnapshotWriter w(&bytes);
  const size_t bb = small_layout().block_bytes();
  std::vector<uint8_t> one(bb, 1);
  ASSERT_TRUE(w.write_manifest(sample_manifest()).ok());
  ASSERT_TRUE(w.write_sequence_state(sample_sequence("seq-a", 7)).ok());
  ASSERT_TRUE(w.write_kv_blocks(KvBlocks{"seq-a", 0, 1, 0, bb, one}).ok());
  SequenceState done = sample_sequence("seq-a", 0);
  done.finished = true;
  ASSERT_TRUE(w.write_sequence_state(done).ok());
  ASSERT_TRUE(w.write_end().ok());
  SnapshotDecoder d;
  ASSERT_TRUE(decode_all(d, bytes).ok()) << d.status().to_string();
  auto chunks = drain(d);
  ASSERT_EQ(chunks.size(), 5u);
  EXPECT_TRUE(chunks[3].sequence_state->finished);
}

TEST(SnapshotDecoder, FinishedStateOutOfPlaceIsInvalid) {
  SequenceState done = sample_sequence("seq-a", 0);
  done.finished = true;
  SnapshotDecoder d;
  expect_error(decode_all(d, after_manifest({{ChunkKind::kSequenceState, seq_payload(done)}})),
               StatusCode::kInvalidArgument, "request 'seq-a' is marked finished, but no earlier SequenceState");
  SnapshotDecoder d2;
  expect_error(decode_all(d2, after_manifest({{ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 0))},
                                              {ChunkKind::kSequenceState, seq_payload(done)},
                                              {ChunkKind::kSequenceState, seq_payload(sample_sequence("seq-a", 0))}})),
               StatusCode::kInvalidArgument, "request 'seq-a' came again after it finished");
  SnapshotDecoder d3;
  expect_error(decode_all(d3, after_manifest({{ChunkKind::kQueuedRequest, seq_payload(done)}})),
               StatusCode::kInvalidArgument, "QueuedRequest 'seq-a' is marked finished");
}

TEST(SnapshotDecoder, DataAfterEndIsInvalid) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  expect_error(decode_all(d, s.bytes + "x"), StatusCode::kInvalidArgument,
               "snapshot at byte " + std::to_string(s.bytes.size()) + ": data after the End chunk (chunk 7)");
}

TEST(SnapshotDecoder, ErrorIsStickyAndDropsUndeliveredChunks) {
  const SampleStream s = sample_stream();
  std::string bytes = s.bytes;
  bytes[s.start(3) + kChunkHeaderBytes + 5] ^= 1;
  SnapshotDecoder d;
  const Status first = d.feed(byte_span(bytes));
  ASSERT_FALSE(first.ok());
  EXPECT_FALSE(d.next().has_value());
  const Status again = d.feed(byte_span(s.bytes));
  EXPECT_EQ(again.code(), first.code());
  EXPECT_EQ(again.message(), first.message());
  EXPECT_EQ(d.finish().message(), first.message());
  EXPECT_EQ(d.status().message(), first.message());
}

TEST(SnapshotDecoder, FeedAfterFinishIsRefused) {
  const SampleStream s = sample_stream();
  SnapshotDecoder d;
  ASSERT_TRUE(decode_all(d, s.bytes).ok());
  EXPECT_TRUE(d.finish().ok());
  const uint8_t b = 0;
  expect_error(d.feed(&b, 1), StatusCode::kFailedPrecondition, "bytes fed after finish()");
}

TEST(SnapshotDecoder, PayloadDecodeErrorsNameTheChunk) {
  SequenceState s = sample_sequence("seq-a", 7);
  auto payload = *s.encode();
  nlohmann::json j = nlohmann::json::parse(payload.begin(), payload.end());
  j["sampling"]["top_k"] = -1;
  const std::string text = j.dump();
  SnapshotDecoder d;
  expect_error(decode_all(d, after_manifest({{ChunkKind::kSequenceState, {text.begin(), text.end()}}})),
               StatusCode::kInvalidArgument, "snapshot chunk 1 (SequenceState) at byte ");
  expect_error(d.status(), StatusCode::kInvalidArgument, "field 'sampling.top_k' is -1, outside [0, 2147483647]");
}

// ---- resending a corrupt chunk ----

TEST(SnapshotDecoderResend, PayloadCrcFailureIsResendableWithItsSequenceNumber) {
  const SampleStream s = sample_stream();
  // The transport delivers chunks 0..6 with chunk 3's payload damaged, then (after asking)
  // replays from chunk 3: go-back-N.
  std::string damaged = s.bytes.substr(0, s.start(7));
  damaged[s.start(3) + kChunkHeaderBytes + 3] ^= 0x40;
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = true});
  ASSERT_TRUE(d.feed(byte_span(damaged)).ok()) << d.status().to_string();
  auto request = d.take_resend_request();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->sequence, 3u);
  EXPECT_EQ(request->kind, ChunkKind::kSequenceState);
  EXPECT_EQ(request->stream_offset, s.start(3));
  EXPECT_EQ(request->attempt, 1);
  EXPECT_NE(request->message.find("snapshot chunk 3 (SequenceState) at byte " + std::to_string(s.start(3)) +
                                  ": payload CRC32C"),
            std::string::npos)
      << request->message;
  EXPECT_FALSE(d.take_resend_request().has_value());
  EXPECT_EQ(d.awaiting_resend(), std::optional<uint64_t>(3));
  // Chunks 0..2 came; 4..6 were discarded.
  std::vector<DecodedChunk> chunks = drain(d);
  EXPECT_EQ(chunks.size(), 3u);

  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(s.start(3)))).ok()) << d.status().to_string();
  ASSERT_TRUE(d.finish().ok()) << d.status().to_string();
  EXPECT_FALSE(d.awaiting_resend().has_value());
  for (auto& c : drain(d)) chunks.push_back(std::move(c));
  expect_sample_chunks(chunks, s, /*check_offsets=*/false);
  // Offsets count every byte received, the discarded ones included.
  EXPECT_EQ(chunks[3].stream_offset, s.start(7));
}

TEST(SnapshotDecoderResend, ChunkCorruptTooOftenFailsTheStream) {
  const SampleStream s = sample_stream();
  std::string bad = s.chunk(2);
  bad[kChunkHeaderBytes + 1] ^= 1;
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = true, .max_resends = 2});
  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(0, s.start(2)))).ok());
  ASSERT_TRUE(d.feed(byte_span(bad)).ok());
  ASSERT_TRUE(d.feed(byte_span(bad)).ok());
  EXPECT_EQ(d.take_resend_request()->attempt, 1);
  EXPECT_EQ(d.take_resend_request()->attempt, 2);
  expect_error(d.feed(byte_span(bad)), StatusCode::kDataLoss, "(arrived corrupt 3 times)");
}

TEST(SnapshotDecoderResend, EndingWhileAwaitingAResendFails) {
  const SampleStream s = sample_stream();
  std::string bytes = s.bytes;
  bytes[s.start(5) + kChunkHeaderBytes] ^= 1;
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = true});
  ASSERT_TRUE(d.feed(byte_span(bytes)).ok());  // End (chunk 7) is discarded too
  EXPECT_FALSE(d.ended());
  expect_error(d.finish(), StatusCode::kDataLoss, "while chunk 5 awaited its resend");
}

TEST(SnapshotDecoderResend, HeaderCrcFailureIsNotResendable) {
  const SampleStream s = sample_stream();
  std::string bytes = s.bytes;
  bytes[s.start(2) + 16] ^= 1;  // the payload length
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = true});
  expect_error(d.feed(byte_span(bytes)), StatusCode::kDataLoss, "header CRC32C");
  EXPECT_FALSE(d.take_resend_request().has_value());
}

TEST(SnapshotDecoderResend, AnOlderChunkWhileAwaitingAResendIsDataLoss) {
  const SampleStream s = sample_stream();
  std::string bad = s.chunk(2);
  bad[kChunkHeaderBytes + 1] ^= 1;
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = true});
  ASSERT_TRUE(d.feed(byte_span(s.bytes.substr(0, s.start(2)) + bad)).ok());
  expect_error(d.feed(byte_span(s.chunk(1))), StatusCode::kDataLoss,
               "sequence number 1, expected 2: chunk 1 repeated while chunk 2 awaited its resend");
}

}  // namespace
}  // namespace hotswap::migration
