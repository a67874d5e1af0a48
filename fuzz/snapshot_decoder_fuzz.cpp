// libFuzzer target: SnapshotDecoder on hostile bytes (fuzz/snapshot_fuzz_input.h has the input
// format). Besides "no crash, no out-of-bounds read, no unbounded allocation" (ASan, UBSan and
// libFuzzer's -rss_limit_mb), it checks the decoder's promises and aborts when one breaks:
//   - the result does not depend on how the bytes are split: one feed and random splits give
//     the same chunks and the same error message;
//   - chunks come out numbered consecutively (resent ones once), KV data inside the payload;
//   - an error is sticky;
//   - a stream the decoder accepts, written again by SnapshotWriter from its decoded chunks,
//     is accepted again with the same chunks and the same End (the writer's own counts).
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "agent/migration/snapshot.h"
#include "agent/migration/snapshot_decoder.h"
#include "fuzz/snapshot_fuzz_input.h"

namespace {

using namespace hotswap;
using namespace hotswap::migration;

void require(bool ok, const char* what, const std::string& detail = "") {
  if (ok) return;
  std::fprintf(stderr, "snapshot_decoder_fuzz: broken promise: %s %s\n", what, detail.c_str());
  std::abort();
}

struct Outcome {
  std::vector<DecodedChunk> chunks;
  std::vector<uint64_t> resend_requests;
  Status status;  // the first error of feed() or finish()
};

void take_all(SnapshotDecoder& d, Outcome& out) {
  while (auto c = d.next()) {
    const uint64_t want = out.chunks.empty() ? 0 : out.chunks.back().sequence + 1;
    require(c->sequence == want, "chunks numbered consecutively",
            std::to_string(c->sequence) + " after " + std::to_string(want));
    if (c->kv_blocks) {
      const uint8_t* begin = c->payload.data();
      const uint8_t* end = begin + c->payload.size();
      require(c->kv_blocks->data.data() >= begin && c->kv_blocks->data.data() + c->kv_blocks->data.size() <= end,
              "KV data inside the payload");
    }
    out.chunks.push_back(std::move(*c));
  }
  while (auto r = d.take_resend_request()) out.resend_requests.push_back(r->sequence);
}

// Feeds `stream` in pieces whose sizes come from `seed` (0: one piece), some of them in place.
Outcome decode(const std::string& stream, bool resend, uint32_t seed) {
  SnapshotDecoder d(SnapshotDecoder::Options{.resend_corrupt_chunks = resend, .max_resends = 2});
  Outcome out;
  const auto* p = reinterpret_cast<const uint8_t*>(stream.data());
  size_t at = 0;
  uint32_t x = seed | 1;
  while (at < stream.size()) {
    size_t n = stream.size() - at;
    if (seed != 0) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      n = std::min<size_t>(n, x % 4 == 0 ? 1 : x % 61);
    }
    // Some pieces go in place, as a transport receiving into payload_space() puts them.
    Status st;
    const std::span<uint8_t> space = d.payload_space();
    if (seed != 0 && !space.empty() && x % 3 == 0) {
      n = std::min(n, space.size());
      std::memcpy(space.data(), p + at, n);
      st = d.commit_payload(n);
    } else {
      st = d.feed(p + at, n);
    }
    at += n;
    take_all(d, out);
    if (!st.ok()) {
      out.status = st;
      Status again = d.feed(p, stream.size());
      require(again.code() == st.code() && again.message() == st.message(), "errors are sticky", again.message());
      require(!d.next().has_value(), "no chunk after an error");
      require(d.finish().message() == st.message(), "finish() repeats the error");
      return out;
    }
  }
  out.status = d.finish();
  take_all(d, out);
  return out;
}

// Writes the decoded chunks again with SnapshotWriter.
std::string rewrite(const std::vector<DecodedChunk>& chunks, End* end) {
  std::string bytes;
  SnapshotWriter w(&bytes);
  for (const DecodedChunk& c : chunks) {
    Status st;
    switch (c.kind) {
      case ChunkKind::kManifest:
        st = w.write_manifest(*c.manifest);
        break;
      case ChunkKind::kSequenceState:
        st = w.write_sequence_state(*c.sequence_state);
        break;
      case ChunkKind::kQueuedRequest:
        st = w.write_queued_request(*c.sequence_state);
        break;
      case ChunkKind::kKvBlocks:
        st = w.write_kv_blocks(*c.kv_blocks);
        break;
      case ChunkKind::kEnd:
        *end = w.totals();
        st = w.write_end();
        break;
    }
    require(st.ok(), "a decoded chunk encodes again", st.to_string());
  }
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::FuzzCase fc = fuzz::parse_input(data, size);
  Outcome whole = decode(fc.stream, fc.resend, 0);
  Outcome split = decode(fc.stream, fc.resend, fc.split_seed);
  require(whole.status.code() == split.status.code() && whole.status.message() == split.status.message(),
          "the same result for any split", whole.status.to_string() + " vs " + split.status.to_string());
  require(whole.chunks.size() == split.chunks.size() || !whole.status.ok(), "the same chunks for any split");
  require(whole.resend_requests == split.resend_requests || !whole.status.ok(), "the same resend requests");

  if (whole.status.ok()) {
    require(!whole.chunks.empty() && whole.chunks.back().kind == ChunkKind::kEnd, "an accepted stream ends with End");
    End totals;
    const std::string again = rewrite(whole.chunks, &totals);
    require(totals == *whole.chunks.back().end, "the writer counts what the decoder counted");
    Outcome second = decode(again, false, 0);
    require(second.status.ok(), "a rewritten stream is accepted", second.status.to_string());
    require(second.chunks.size() == whole.chunks.size(), "a rewritten stream has the same chunks");
    for (size_t i = 0; i < second.chunks.size(); ++i) {
      require(second.chunks[i].payload == whole.chunks[i].payload || second.chunks[i].kind != ChunkKind::kKvBlocks,
              "KvBlocks payloads are written back byte for byte");
    }
  }
  return 0;
}
