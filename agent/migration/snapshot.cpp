#include "agent/migration/snapshot.h"
#include "agent/migration/little_endian.h"

#include <cstring>

#include "agent/migration/crc32c.h"

namespace hotswap::migration {
namespace {}  // namespace

std::string chunk_kind_name(uint16_t kind) {
  switch (static_cast<ChunkKind>(kind)) {
    case ChunkKind::kManifest:
      return "Manifest";
    case ChunkKind::kSequenceState:
      return "SequenceState";
    case ChunkKind::kKvBlocks:
      return "KvBlocks";
    case ChunkKind::kQueuedRequest:
      return "QueuedRequest";
    case ChunkKind::kEnd:
      return "End";
  }
  return "kind " + std::to_string(kind);
}

bool is_known_chunk_kind(uint16_t kind) {
  return kind >= static_cast<uint16_t>(ChunkKind::kManifest) && kind <= static_cast<uint16_t>(ChunkKind::kEnd);
}

uint32_t max_payload_bytes(ChunkKind kind) {
  return kind == ChunkKind::kKvBlocks ? kMaxChunkPayloadBytes : kMaxJsonPayloadBytes;
}

std::array<uint8_t, kChunkHeaderBytes> encode_chunk_header(const ChunkHeader& h) {
  std::array<uint8_t, kChunkHeaderBytes> out{};
  std::memcpy(out.data(), kSnapshotMagic, 4);
  put_le16(out.data() + 4, h.version);
  put_le16(out.data() + 6, h.kind);
  put_le64(out.data() + 8, h.sequence);
  put_le32(out.data() + 16, h.payload_bytes);
  put_le32(out.data() + 20, h.payload_crc32c);
  put_le32(out.data() + 24, crc32c(out.data(), 24));
  put_le32(out.data() + 28, 0);
  return out;
}

SnapshotWriter::SnapshotWriter(std::string* out) : out_(out) {}

SnapshotWriter::SnapshotWriter(Sink sink) : sink_(std::move(sink)) {}

SnapshotWriter::SnapshotWriter(ChunkSink sink) : chunk_sink_(std::move(sink)) {}

Status SnapshotWriter::put(const uint8_t* data, size_t n) {
  if (n == 0) return Status::ok_status();
  if (out_ != nullptr) {
    out_->append(reinterpret_cast<const char*>(data), n);
  } else {
    Status st = sink_(data, n);
    if (!st.ok()) {
      status_ = st.with_context("snapshot sink, chunk " + std::to_string(next_sequence_));
      return status_;
    }
  }
  bytes_written_ += n;
  return Status::ok_status();
}

Status SnapshotWriter::emit(ChunkKind kind, std::span<const std::span<const uint8_t>> pieces,
                            const PieceOwner& owner) {
  HOTSWAP_RETURN_IF_ERROR(status_);
  uint64_t total = 0;
  for (const auto& piece : pieces) total += piece.size();
  if (total > max_payload_bytes(kind)) {
    return invalid_argument("snapshot chunk " + std::to_string(next_sequence_) + " (" + chunk_kind_name(kind) +
                            "): payload of " + std::to_string(total) + " bytes exceeds the limit of " +
                            std::to_string(max_payload_bytes(kind)));
  }
  ChunkHeader h;
  h.kind = static_cast<uint16_t>(kind);
  h.sequence = next_sequence_;
  h.payload_bytes = static_cast<uint32_t>(total);
  if (chunk_sink_) {
    Status st = chunk_sink_(h, pieces, owner);
    if (!st.ok()) {
      status_ = st.with_context("snapshot sink, chunk " + std::to_string(next_sequence_));
      return status_;
    }
    bytes_written_ += kChunkHeaderBytes + total;
    ++next_sequence_;
    return Status::ok_status();
  }
  for (const auto& piece : pieces) h.payload_crc32c = crc32c_extend(h.payload_crc32c, piece.data(), piece.size());
  const auto header = encode_chunk_header(h);
  // The header and the first piece (a JSON payload, or KvBlocks' sub-header) in one call, so
  // a sink sees each chunk begin at the start of a call and small chunks in one call.
  if (pieces.empty()) {
    HOTSWAP_RETURN_IF_ERROR(put(header.data(), header.size()));
  } else if (out_ != nullptr || pieces[0].size() > 4096) {
    HOTSWAP_RETURN_IF_ERROR(put(header.data(), header.size()));
    HOTSWAP_RETURN_IF_ERROR(put(pieces[0].data(), pieces[0].size()));
  } else {
    uint8_t first[kChunkHeaderBytes + 4096];
    std::memcpy(first, header.data(), header.size());
    std::memcpy(first + header.size(), pieces[0].data(), pieces[0].size());
    HOTSWAP_RETURN_IF_ERROR(put(first, header.size() + pieces[0].size()));
  }
  for (size_t i = 1; i < pieces.size(); ++i) HOTSWAP_RETURN_IF_ERROR(put(pieces[i].data(), pieces[i].size()));
  ++next_sequence_;
  return Status::ok_status();
}

Status SnapshotWriter::write_chunk(ChunkKind kind, std::span<const uint8_t> payload) {
  const std::span<const uint8_t> pieces[] = {payload};
  return emit(kind, pieces);
}

Status SnapshotWriter::write_manifest(const Manifest& manifest) {
  auto payload = manifest.encode();
  if (!payload.ok()) return payload.status().with_context("snapshot Manifest");
  return write_chunk(ChunkKind::kManifest, *payload);
}

Status SnapshotWriter::write_sequence_state(const SequenceState& state) {
  auto payload = state.encode();
  if (!payload.ok()) return payload.status().with_context("snapshot SequenceState '" + state.request_id + "'");
  HOTSWAP_RETURN_IF_ERROR(write_chunk(ChunkKind::kSequenceState, *payload));
  if (sequence_ids_.insert(state.request_id).second) ++totals_.sequences;
  return Status::ok_status();
}

Status SnapshotWriter::write_queued_request(const QueuedRequest& request) {
  auto payload = request.encode();
  if (!payload.ok()) return payload.status().with_context("snapshot QueuedRequest '" + request.request_id + "'");
  HOTSWAP_RETURN_IF_ERROR(write_chunk(ChunkKind::kQueuedRequest, *payload));
  ++totals_.queued;
  return Status::ok_status();
}

Status SnapshotWriter::write_kv_blocks(const KvBlocks& blocks) {
  const std::string context = "snapshot KvBlocks '" + blocks.request_id + "'";
  auto header = encode_kv_blocks_header(blocks);
  if (!header.ok()) return header.status().with_context(context);
  const uint64_t data_bytes = static_cast<uint64_t>(blocks.count) * blocks.block_bytes;
  if (blocks.data.size() != data_bytes) {
    return invalid_argument(context + ": data is " + std::to_string(blocks.data.size()) + " bytes, " +
                            std::to_string(blocks.count) + " blocks of " + std::to_string(blocks.block_bytes) +
                            " bytes are " + std::to_string(data_bytes));
  }
  const std::span<const uint8_t> pieces[] = {*header, blocks.data};
  // The sub-header is ours for this call; the block bytes are blocks.owner's, if it is set.
  HOTSWAP_RETURN_IF_ERROR(emit(ChunkKind::kKvBlocks, pieces, PieceOwner{blocks.owner, 1}));
  ++totals_.kv_chunks;
  totals_.kv_bytes += static_cast<int64_t>(data_bytes);
  return Status::ok_status();
}

Status SnapshotWriter::write_kv_blocks(const KvBlocks& blocks, std::span<const uint8_t* const> block_data) {
  const std::string context = "snapshot KvBlocks '" + blocks.request_id + "'";
  auto header = encode_kv_blocks_header(blocks);
  if (!header.ok()) return header.status().with_context(context);
  if (block_data.size() != static_cast<uint64_t>(blocks.count)) {
    return invalid_argument(context + ": " + std::to_string(block_data.size()) + " block pointers for " +
                            std::to_string(blocks.count) + " blocks");
  }
  // Checked here, before a piece list as long as count is built.
  const uint64_t data_bytes = static_cast<uint64_t>(blocks.count) * blocks.block_bytes;
  if (data_bytes > kMaxChunkPayloadBytes) {
    return invalid_argument(context + ": " + std::to_string(data_bytes) + " block bytes exceed the chunk limit of " +
                            std::to_string(kMaxChunkPayloadBytes));
  }
  for (size_t i = 0; i < block_data.size(); ++i) {
    if (block_data[i] == nullptr)
      return invalid_argument(context + ": block pointer " + std::to_string(i) + " is null");
  }
  std::vector<std::span<const uint8_t>> pieces;
  pieces.reserve(block_data.size() + 1);
  pieces.emplace_back(*header);
  for (const uint8_t* block : block_data) pieces.emplace_back(block, blocks.block_bytes);
  HOTSWAP_RETURN_IF_ERROR(emit(ChunkKind::kKvBlocks, pieces));
  ++totals_.kv_chunks;
  totals_.kv_bytes += static_cast<int64_t>(data_bytes);
  return Status::ok_status();
}

End SnapshotWriter::totals() const {
  return totals_;
}

Status SnapshotWriter::write_end() {
  const std::vector<uint8_t> payload = totals_.encode();
  return write_chunk(ChunkKind::kEnd, payload);
}

}  // namespace hotswap::migration
