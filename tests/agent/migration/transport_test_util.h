// A migration-sized snapshot stream (MBs of KV blocks) and helpers to move it through a
// transport, for the transport tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "agent/migration/snapshot.h"
#include "agent/migration/snapshot_decoder.h"
#include "agent/migration/transport.h"
#include "tests/agent/migration/snapshot_test_util.h"

namespace hotswap::migration::testing {

using namespace std::chrono_literals;

// 4 layers, 4 KV heads, head_dim 64, 16 positions per block, f16: 64 KiB blocks.
inline kernels::KvLayout big_layout() {
  kernels::KvLayout l;
  l.n_layers = 4;
  l.n_kv_heads = 4;
  l.head_dim = 64;
  l.block_size = 16;
  l.dtype = kernels::DType::kF16;
  return l;
}

// Manifest; per sequence its SequenceState and its blocks in KvBlocks chunks of
// blocks_per_chunk (written in the gather form, one pointer per block, as a paged pool does);
// a QueuedRequest; End.
struct BigStream {
  int sequences = 4;
  int64_t blocks_per_sequence = 128;  // 8 MiB per sequence with 64 KiB blocks
  int64_t blocks_per_chunk = 16;      // 1 MiB KvBlocks chunks
  std::vector<uint8_t> pool;          // block b of sequence s at (s * blocks_per_sequence + b) * block_bytes
  // Set: KvBlocks go as contiguous runs of this copy of the pool, owned by it (KvBlocks::owner),
  // so a sender keeps references instead of copies. Unset: gathered block by block, copied.
  std::shared_ptr<const std::vector<uint8_t>> owned_pool;

  size_t block_bytes() const { return big_layout().block_bytes(); }

  std::string request_id(int s) const { return "seq-" + std::to_string(s); }

  Status write(SnapshotWriter& w) const {
    Manifest m = sample_manifest();
    m.kv_layout = big_layout();
    HOTSWAP_RETURN_IF_ERROR(w.write_manifest(m));
    const int64_t block_size = big_layout().block_size;
    for (int s = 0; s < sequences; ++s) {
      SequenceState state = sample_sequence(request_id(s), 0);
      state.position = blocks_per_sequence * block_size - 3;
      state.prompt.assign(static_cast<size_t>(state.position), 11);
      state.generated = {12};
      state.kv_blocks = blocks_per_sequence;
      HOTSWAP_RETURN_IF_ERROR(w.write_sequence_state(state));
      for (int64_t first = 0; first < blocks_per_sequence; first += blocks_per_chunk) {
        KvBlocks b;
        b.request_id = request_id(s);
        b.first_block = first;
        b.count = std::min(blocks_per_chunk, blocks_per_sequence - first);
        b.block_bytes = block_bytes();
        if (owned_pool) {
          b.data = std::span<const uint8_t>(owned_pool->data() + (s * blocks_per_sequence + first) * block_bytes(),
                                            static_cast<size_t>(b.count) * block_bytes());
          b.owner = owned_pool;
          HOTSWAP_RETURN_IF_ERROR(w.write_kv_blocks(b));
          continue;
        }
        std::vector<const uint8_t*> pointers;
        for (int64_t i = 0; i < b.count; ++i) {
          pointers.push_back(pool.data() + (s * blocks_per_sequence + first + i) * block_bytes());
        }
        HOTSWAP_RETURN_IF_ERROR(w.write_kv_blocks(b, pointers));
      }
    }
    HOTSWAP_RETURN_IF_ERROR(w.write_queued_request(sample_queued("queued-1")));
    return w.write_end();
  }

  std::string bytes() const {
    std::string out;
    SnapshotWriter w(&out);
    EXPECT_TRUE(write(w).ok());
    return out;
  }
};

inline BigStream make_big_stream(int sequences = 4, int64_t blocks_per_sequence = 128) {
  BigStream s;
  s.sequences = sequences;
  s.blocks_per_sequence = blocks_per_sequence;
  s.pool.resize(static_cast<size_t>(sequences * blocks_per_sequence) * s.block_bytes());
  uint32_t x = 0x9e3779b9u;
  for (size_t i = 0; i < s.pool.size(); i += 4) {
    x = x * 1664525u + 1013904223u;
    std::memcpy(s.pool.data() + i, &x, 4);
  }
  return s;
}

// The chunks a decoder hands out for these bytes (the reference a transfer must match).
inline std::vector<DecodedChunk> decode_reference(const std::string& bytes) {
  SnapshotDecoder d;
  EXPECT_TRUE(decode_all(d, bytes).ok());
  return drain(d);
}

// Same sequence numbers, kinds and payload bytes, in the same order.
inline void expect_same_chunks(const std::vector<DecodedChunk>& got, const std::vector<DecodedChunk>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].sequence, want[i].sequence) << "chunk " << i;
    EXPECT_EQ(got[i].kind, want[i].kind) << "chunk " << i;
    EXPECT_TRUE(got[i].payload == want[i].payload) << "chunk " << i << " payload differs";
  }
}

// Writes the whole stream into a sender, as SnapshotWriter's sink; the first error.
inline Status send_stream(ChunkSender& sender, const BigStream& stream,
                          std::chrono::milliseconds timeout_per_write = 10s) {
  SnapshotWriter w(snapshot_sink(sender, timeout_per_write));
  return stream.write(w);
}

// Both ends of one chunk stream.
struct Connected {
  std::unique_ptr<ChunkSender> sender;
  std::unique_ptr<ChunkReceiver> receiver;
};

// For a source in a child process: the whole stream, flushed, then the target's reply, which
// must be {"switched":true}. The first failure, saying which step.
inline Status send_stream_for_reply(ChunkSender& sender, const BigStream& stream,
                                    std::chrono::milliseconds timeout_per_write = 10s) {
  HOTSWAP_RETURN_IF_ERROR(send_stream(sender, stream, timeout_per_write).with_context("send_stream"));
  HOTSWAP_RETURN_IF_ERROR(sender.flush(30s).with_context("flush"));
  auto reply = sender.await_reply(30s);
  if (!reply.ok()) return reply.status().with_context("await_reply");
  if (*reply != R"({"switched":true})") return internal_error("reply: unexpected reply " + *reply);
  return Status::ok_status();
}

// For a source in a child process that dies mid-stream: writes the stream and, once more than
// 3 MB have gone, exits at once with exit_status and no cleanup, as a crash would (the kernel
// closes its descriptors). Returns 2 only when the stream ended first.
inline int write_stream_then_die(ChunkSender& sender, const BigStream& stream, int exit_status,
                                 std::chrono::milliseconds timeout_per_write) {
  uint64_t written = 0;
  SnapshotWriter w([&](const uint8_t* data, size_t n) {
    if (written > 3'000'000) std::_Exit(exit_status);
    written += n;
    return sender.write(data, n, timeout_per_write);
  });
  (void)stream.write(w);
  return 2;
}

struct Received {
  Status status;  // OK when End came
  std::vector<DecodedChunk> chunks;
};

// Reads chunks until End, an error, or max_chunks.
inline Received receive_all(ChunkReceiver& receiver, std::chrono::milliseconds per_chunk = 10s,
                            size_t max_chunks = 100000) {
  Received out;
  while (out.chunks.size() < max_chunks) {
    auto c = receiver.next(per_chunk);
    if (!c.ok()) {
      out.status = c.status();
      return out;
    }
    const bool end = c->kind == ChunkKind::kEnd;
    out.chunks.push_back(std::move(c).value());
    if (end) return out;
  }
  out.status = internal_error("more than max_chunks chunks");
  return out;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace hotswap::migration::testing
