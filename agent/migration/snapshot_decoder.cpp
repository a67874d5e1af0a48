#include "agent/migration/snapshot_decoder.h"
#include "agent/migration/little_endian.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "agent/migration/crc32c.h"

namespace hotswap::migration {
namespace {

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

// "48 53 57 50 ("HSWP")", printable bytes shown as text.
std::string describe_magic(const uint8_t* p) {
  std::string hex, text;
  for (int i = 0; i < 4; ++i) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    if (i > 0) hex += ' ';
    hex += buf;
    text += (p[i] >= 0x20 && p[i] < 0x7f) ? static_cast<char>(p[i]) : '.';
  }
  return hex + " (\"" + text + "\")";
}

// First block in [0, limit) that `covered` lacks, as [first, end); nullopt when none.
std::optional<std::pair<int64_t, int64_t>> first_gap(const std::map<int64_t, int64_t>& covered, int64_t limit) {
  int64_t next = 0;
  for (const auto& [first, end] : covered) {
    if (next >= limit) break;
    if (first > next) return std::make_pair(next, std::min(first, limit));
    next = std::max(next, end);
  }
  if (next < limit) return std::make_pair(next, limit);
  return std::nullopt;
}

// Adds [first, end) to a set of disjoint, non-adjacent ranges.
void cover(std::map<int64_t, int64_t>& covered, int64_t first, int64_t end) {
  auto it = covered.upper_bound(first);
  if (it != covered.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) {
      first = prev->first;
      end = std::max(end, prev->second);
      it = covered.erase(prev);
    }
  }
  while (it != covered.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = covered.erase(it);
  }
  covered.emplace(first, end);
}

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

}  // namespace

Status SnapshotDecoder::fail(Status status) {
  status_ = std::move(status);
  ready_.clear();
  resend_requests_.clear();
  payload_ = {};
  return status_;
}

std::string SnapshotDecoder::where() const {
  return "snapshot chunk " + std::to_string(header_.sequence) + " (" + chunk_kind_name(header_.kind) + ") at byte " +
         std::to_string(chunk_offset_) + ": ";
}

std::optional<uint64_t> SnapshotDecoder::awaiting_resend() const {
  if (!awaiting_resend_) return std::nullopt;
  return expected_sequence_;
}

Status SnapshotDecoder::feed(const uint8_t* data, size_t n) {
  if (!status_.ok()) return status_;
  if (stage_ == Stage::kFinished && n > 0) {
    return fail(failed_precondition("snapshot at byte " + std::to_string(offset_) + ": bytes fed after finish()"));
  }
  if (n > 0 && data == nullptr) return fail(invalid_argument("snapshot: feed() of a null pointer"));
  while (n > 0) {
    if (end_seen_) {
      return fail(invalid_argument("snapshot at byte " + std::to_string(offset_) +
                                   ": data after the End chunk (chunk " + std::to_string(expected_sequence_ - 1) +
                                   ")"));
    }
    switch (stage_) {
      case Stage::kHeader: {
        if (header_have_ == 0) chunk_offset_ = offset_;
        const size_t take = std::min(n, kChunkHeaderBytes - header_have_);
        std::memcpy(header_bytes_.data() + header_have_, data, take);
        header_have_ += take;
        data += take;
        n -= take;
        offset_ += take;
        if (header_have_ == kChunkHeaderBytes) {
          header_have_ = 0;
          HOTSWAP_RETURN_IF_ERROR(on_header());
        }
        break;
      }
      case Stage::kPayload: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(n, payload_left_));
        std::memcpy(payload_.data() + payload_have_, data, take);
        data += take;
        n -= take;
        HOTSWAP_RETURN_IF_ERROR(commit_payload(take));
        break;
      }
      case Stage::kDiscardPayload: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(n, payload_left_));
        payload_left_ -= take;
        data += take;
        n -= take;
        offset_ += take;
        if (payload_left_ == 0) stage_ = Stage::kHeader;
        break;
      }
      case Stage::kFinished:
        return status_;  // unreachable: n > 0 after finish() failed above
    }
  }
  return Status::ok_status();
}

Status SnapshotDecoder::on_header() {
  const uint8_t* h = header_bytes_.data();
  const std::string unframed =
      "snapshot chunk " + std::to_string(expected_sequence_) + " at byte " + std::to_string(chunk_offset_) + ": ";
  if (std::memcmp(h, kSnapshotMagic, 4) != 0) {
    return fail(data_loss(unframed + "magic " + describe_magic(h) +
                          ", expected 48 53 57 50 (\"HSWP\"): not a snapshot stream, or it lost its framing"));
  }
  const uint16_t version = get_le16(h + 4);
  if (version != kSnapshotFormatVersion) {
    return fail(unimplemented(unframed + "snapshot format version " + std::to_string(version) +
                              "; this build reads version " + std::to_string(kSnapshotFormatVersion) + " only"));
  }
  const uint32_t header_crc = crc32c(h, 24);
  const uint32_t stated_crc = get_le32(h + 24);
  if (header_crc != stated_crc) {
    return fail(data_loss(unframed + "header CRC32C " + hex32(header_crc) + ", header says " + hex32(stated_crc)));
  }
  header_.version = version;
  header_.kind = get_le16(h + 6);
  header_.sequence = get_le64(h + 8);
  header_.payload_bytes = get_le32(h + 16);
  header_.payload_crc32c = get_le32(h + 20);
  if (const uint32_t reserved = get_le32(h + 28); reserved != 0) {
    return fail(invalid_argument(where() + "reserved header field is " + hex32(reserved) + ", expected 0"));
  }
  if (!is_known_chunk_kind(header_.kind)) {
    return fail(invalid_argument(where() + "unknown chunk kind " + std::to_string(header_.kind) + "; format version " +
                                 std::to_string(kSnapshotFormatVersion) + " has kinds 1..5"));
  }
  const auto kind = static_cast<ChunkKind>(header_.kind);
  if (header_.payload_bytes > max_payload_bytes(kind)) {
    return fail(invalid_argument(where() + "payload length " + std::to_string(header_.payload_bytes) +
                                 " exceeds the limit of " + std::to_string(max_payload_bytes(kind)) + " bytes for " +
                                 chunk_kind_name(kind) + " chunks"));
  }
  const uint64_t seq = header_.sequence;
  const uint64_t want = expected_sequence_;
  if (awaiting_resend_ && seq > want) {
    // In flight behind the corrupt chunk; the sender replays it after chunk `want`.
    stage_ = header_.payload_bytes > 0 ? Stage::kDiscardPayload : Stage::kHeader;
    payload_left_ = header_.payload_bytes;
    return Status::ok_status();
  }
  if (seq != want) {
    std::string what = "sequence number " + std::to_string(seq) + ", expected " + std::to_string(want) + ": ";
    if (awaiting_resend_) {
      what += "chunk " + std::to_string(seq) + " repeated while chunk " + std::to_string(want) + " awaited its resend";
    } else if (seq > want) {
      what += seq - want == 1
                  ? "chunk " + std::to_string(want) + " is missing or reordered"
                  : "chunks " + std::to_string(want) + ".." + std::to_string(seq - 1) + " are missing or reordered";
    } else {
      what += "chunk " + std::to_string(seq) + " is duplicated or reordered";
    }
    return fail(data_loss(where() + what));
  }
  stage_ = Stage::kPayload;
  payload_ = PayloadBytes(header_.payload_bytes);
  payload_have_ = 0;
  payload_crc_ = 0;
  payload_left_ = header_.payload_bytes;
  if (payload_left_ == 0) return on_payload();
  return Status::ok_status();
}

std::span<uint8_t> SnapshotDecoder::payload_space() {
  if (!status_.ok() || stage_ != Stage::kPayload) return {};
  return {payload_.data() + payload_have_, static_cast<size_t>(payload_left_)};
}

Status SnapshotDecoder::commit_payload(size_t n) {
  if (!status_.ok()) return status_;
  if (stage_ != Stage::kPayload || n > payload_left_) {
    return failed_precondition("snapshot at byte " + std::to_string(offset_) + ": commit_payload(" +
                               std::to_string(n) + ") with " +
                               std::to_string(stage_ == Stage::kPayload ? payload_left_ : 0) +
                               " payload bytes awaited");
  }
  // Checked as they arrive, while the bytes are still in cache.
  payload_crc_ = crc32c_extend(payload_crc_, payload_.data() + payload_have_, n);
  payload_have_ += n;
  payload_left_ -= n;
  offset_ += n;
  if (payload_left_ == 0) return on_payload();
  return Status::ok_status();
}

Status SnapshotDecoder::on_payload() {
  stage_ = Stage::kHeader;
  const auto kind = static_cast<ChunkKind>(header_.kind);
  const uint32_t crc = payload_crc_;
  if (crc != header_.payload_crc32c) {
    std::string message = where() + "payload CRC32C " + hex32(crc) + ", header says " + hex32(header_.payload_crc32c);
    if (!options_.resend_corrupt_chunks) return fail(data_loss(message));
    corrupt_attempts_ = corrupt_sequence_ == header_.sequence ? corrupt_attempts_ + 1 : 1;
    corrupt_sequence_ = header_.sequence;
    if (corrupt_attempts_ > options_.max_resends) {
      return fail(data_loss(message + " (arrived corrupt " + std::to_string(corrupt_attempts_) + " times)"));
    }
    resend_requests_.push_back(ChunkCorrupt{header_.sequence, kind, chunk_offset_, corrupt_attempts_, message});
    awaiting_resend_ = true;
    payload_ = {};
    return Status::ok_status();
  }

  // Order rules that need only the kind come before decoding, so the message names the rule.
  if (!manifest_ && kind != ChunkKind::kManifest) {
    return fail(invalid_argument(where() + "the first chunk must be a Manifest"));
  }
  if (manifest_ && kind == ChunkKind::kManifest) {
    return fail(invalid_argument(where() + "a second Manifest; a stream has one, as chunk 0"));
  }

  DecodedChunk chunk;
  chunk.sequence = header_.sequence;
  chunk.kind = kind;
  chunk.stream_offset = chunk_offset_;
  chunk.payload = std::move(payload_);
  payload_ = {};
  Status decoded;
  switch (kind) {
    case ChunkKind::kManifest: {
      auto m = Manifest::decode(chunk.payload);
      if (m.ok()) chunk.manifest = std::move(m).value();
      decoded = m.status();
      break;
    }
    case ChunkKind::kSequenceState:
    case ChunkKind::kQueuedRequest: {
      auto s = SequenceState::decode(chunk.payload);
      if (s.ok()) chunk.sequence_state = std::move(s).value();
      decoded = s.status();
      break;
    }
    case ChunkKind::kKvBlocks: {
      auto b = KvBlocks::decode(chunk.payload);
      if (b.ok()) chunk.kv_blocks = std::move(b).value();
      decoded = b.status();
      break;
    }
    case ChunkKind::kEnd: {
      auto e = End::decode(chunk.payload);
      if (e.ok()) chunk.end = std::move(e).value();
      decoded = e.status();
      break;
    }
  }
  if (!decoded.ok()) return fail(Status(decoded.code(), where() + decoded.message()));
  HOTSWAP_RETURN_IF_ERROR(check_rules(chunk));
  ++expected_sequence_;
  awaiting_resend_ = false;
  last_kind_ = kind;
  ready_.push_back(std::move(chunk));
  return Status::ok_status();
}

Status SnapshotDecoder::check_rules(DecodedChunk& chunk) {
  switch (chunk.kind) {
    case ChunkKind::kManifest:
      manifest_ = *chunk.manifest;
      return Status::ok_status();

    case ChunkKind::kSequenceState: {
      const SequenceState& s = *chunk.sequence_state;
      const int64_t block_size = manifest_->kv_layout.block_size;
      const int64_t blocks = (s.position + block_size - 1) / block_size;
      if (s.kv_blocks != blocks) {
        return fail(invalid_argument(where() + "request " + quoted(s.request_id) + " has kv_blocks " +
                                     std::to_string(s.kv_blocks) + ", but position " + std::to_string(s.position) +
                                     " takes " + std::to_string(blocks) + " blocks of " + std::to_string(block_size)));
      }
      if (s.finished && !requests_.count(s.request_id)) {
        return fail(invalid_argument(where() + "request " + quoted(s.request_id) +
                                     " is marked finished, but no earlier SequenceState of it came"));
      }
      auto [it, inserted] = requests_.try_emplace(s.request_id);
      if (!inserted && it->second.queued) {
        return fail(invalid_argument(where() + "request " + quoted(s.request_id) + " already came as a QueuedRequest"));
      }
      if (it->second.finished) {
        return fail(invalid_argument(where() + "request " + quoted(s.request_id) + " came again after it finished"));
      }
      it->second.finished = s.finished;
      it->second.kv_blocks = s.kv_blocks;
      if (inserted) ++seen_.sequences;
      return Status::ok_status();
    }

    case ChunkKind::kQueuedRequest: {
      const SequenceState& q = *chunk.sequence_state;
      if (q.finished) {
        return fail(invalid_argument(where() + "QueuedRequest " + quoted(q.request_id) + " is marked finished"));
      }
      if (q.position != 0 || q.kv_blocks != 0) {
        return fail(invalid_argument(where() + "request " + quoted(q.request_id) + " has position " +
                                     std::to_string(q.position) + " and kv_blocks " + std::to_string(q.kv_blocks) +
                                     "; a QueuedRequest carries no KV (both 0)"));
      }
      auto [it, inserted] = requests_.try_emplace(q.request_id);
      if (!inserted) {
        return fail(invalid_argument(where() + "request " + quoted(q.request_id) + " already came as a " +
                                     (it->second.queued ? "QueuedRequest" : "SequenceState")));
      }
      it->second.queued = true;
      ++seen_.queued;
      return Status::ok_status();
    }

    case ChunkKind::kKvBlocks: {
      const KvBlocks& b = *chunk.kv_blocks;
      const uint64_t layout_bytes = manifest_->kv_layout.block_bytes();
      if (b.block_bytes != layout_bytes) {
        return fail(invalid_argument(where() + "blocks of " + std::to_string(b.block_bytes) +
                                     " bytes; the manifest's KV layout has blocks of " + std::to_string(layout_bytes)));
      }
      auto it = requests_.find(b.request_id);
      if (it == requests_.end()) {
        return fail(
            invalid_argument(where() + "KvBlocks of request " + quoted(b.request_id) + " before its SequenceState"));
      }
      RequestRecord& r = it->second;
      if (r.queued) {
        return fail(invalid_argument(where() + "KvBlocks of request " + quoted(b.request_id) +
                                     ", a QueuedRequest (which carries no KV)"));
      }
      const int64_t end = b.first_block + b.count;  // no overflow: KvBlocks::decode checked
      if (end > r.kv_blocks) {
        return fail(invalid_argument(where() + "blocks " + std::to_string(b.first_block) + ".." +
                                     std::to_string(end - 1) + " of request " + quoted(b.request_id) + ", which has " +
                                     std::to_string(r.kv_blocks) + " blocks in its latest SequenceState"));
      }
      cover(r.covered, b.first_block, end);
      ++seen_.kv_chunks;
      seen_.kv_bytes += static_cast<int64_t>(b.data.size());
      return Status::ok_status();
    }

    case ChunkKind::kEnd: {
      HOTSWAP_RETURN_IF_ERROR(check_end(*chunk.end));
      end_seen_ = true;
      return Status::ok_status();
    }
  }
  return Status::ok_status();
}

Status SnapshotDecoder::check_end(const End& end) {
  const std::pair<const char*, std::pair<int64_t, int64_t>> counts[] = {
      {"sequences", {end.sequences, seen_.sequences}},
      {"queued requests", {end.queued, seen_.queued}},
      {"KvBlocks chunks", {end.kv_chunks, seen_.kv_chunks}},
      {"KV bytes", {end.kv_bytes, seen_.kv_bytes}},
  };
  for (const auto& [what, said_seen] : counts) {
    if (said_seen.first != said_seen.second) {
      return fail(invalid_argument(where() + "End counts " + std::to_string(said_seen.first) + " " + what +
                                   ", the stream carried " + std::to_string(said_seen.second)));
    }
  }
  for (const auto& [id, r] : requests_) {
    if (r.queued) continue;
    if (auto gap = first_gap(r.covered, r.kv_blocks)) {
      return fail(invalid_argument(where() + "request " + quoted(id) + " has " + std::to_string(r.kv_blocks) +
                                   " KV blocks, but blocks " + std::to_string(gap->first) + ".." +
                                   std::to_string(gap->second - 1) + " never came"));
    }
  }
  return Status::ok_status();
}

std::optional<DecodedChunk> SnapshotDecoder::next() {
  if (!status_.ok() || ready_.empty()) return std::nullopt;
  DecodedChunk chunk = std::move(ready_.front());
  ready_.pop_front();
  return chunk;
}

std::optional<ChunkCorrupt> SnapshotDecoder::take_resend_request() {
  if (!status_.ok() || resend_requests_.empty()) return std::nullopt;
  ChunkCorrupt c = std::move(resend_requests_.front());
  resend_requests_.pop_front();
  return c;
}

Status SnapshotDecoder::finish() {
  if (!status_.ok()) return status_;
  if (stage_ == Stage::kFinished) return Status::ok_status();
  if (stage_ == Stage::kHeader && header_have_ > 0) {
    return fail(data_loss("snapshot chunk " + std::to_string(expected_sequence_) + " at byte " +
                          std::to_string(chunk_offset_) + ": truncated in the header, " + std::to_string(header_have_) +
                          " of " + std::to_string(kChunkHeaderBytes) + " bytes"));
  }
  if (stage_ == Stage::kPayload) {
    return fail(data_loss(where() + "truncated in the payload, " + std::to_string(payload_have_) + " of " +
                          std::to_string(header_.payload_bytes) + " bytes"));
  }
  if (awaiting_resend_) {
    return fail(data_loss("snapshot ended at byte " + std::to_string(offset_) + " while chunk " +
                          std::to_string(expected_sequence_) + " awaited its resend"));
  }
  if (offset_ == 0) return fail(data_loss("snapshot is empty: no Manifest, no End"));
  if (!end_seen_) {
    return fail(data_loss("snapshot ended at byte " + std::to_string(offset_) + " after chunk " +
                          std::to_string(expected_sequence_ - 1) + " (" + chunk_kind_name(last_kind_) +
                          ") without an End chunk"));
  }
  stage_ = Stage::kFinished;
  return Status::ok_status();
}

}  // namespace hotswap::migration
