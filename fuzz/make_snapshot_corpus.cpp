// Writes the seed corpus of snapshot_decoder_fuzz into a folder (fuzz/corpus/snapshot/ holds
// its output): the valid stream raw, whole and split; the valid stream under a few mutations in
// each mutating mode; and a few small raw oddities.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "agent/migration/snapshot_decoder.h"
#include "fuzz/snapshot_fuzz_input.h"

namespace {

using hotswap::migration::fuzz::MutationOp;
using hotswap::migration::fuzz::Source;

std::string prefix(bool resend, Source source, bool renumber, uint32_t seed) {
  std::string s(5, '\0');
  s[0] = static_cast<char>((resend ? 1 : 0) | static_cast<int>(source) << 1 | (renumber ? 8 : 0));
  for (int i = 0; i < 4; ++i) s[1 + i] = static_cast<char>(seed >> (8 * i));
  return s;
}

std::string mutation(MutationOp op, uint8_t chunk, uint16_t offset, uint8_t value) {
  return {static_cast<char>(op), static_cast<char>(chunk), static_cast<char>(offset & 0xff),
          static_cast<char>(offset >> 8), static_cast<char>(value)};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  std::string stream;
  for (const auto& c : hotswap::migration::fuzz::base_stream()) stream += c;
  // The mutating modes start from this stream: it must be valid, or every seed tests one error.
  hotswap::migration::SnapshotDecoder check;
  hotswap::Status st = check.feed(hotswap::migration::byte_span(stream));
  if (st.ok()) st = check.finish();
  if (!st.ok()) {
    std::fprintf(stderr, "the base stream does not decode: %s\n", st.to_string().c_str());
    return 1;
  }
  std::vector<std::pair<std::string, std::string>> seeds = {
      {"raw-valid", prefix(false, Source::kRaw, false, 0) + stream},
      {"raw-valid-split", prefix(false, Source::kRaw, false, 0x9e3779b9u) + stream},
      {"raw-valid-resend", prefix(true, Source::kRaw, false, 12345) + stream},
      {"raw-truncated", prefix(false, Source::kRaw, false, 7) + stream.substr(0, stream.size() / 2)},
      {"raw-header-only", prefix(false, Source::kRaw, false, 0) + stream.substr(0, 32)},
      {"raw-empty", prefix(false, Source::kRaw, false, 0)},
      {"mutate-none", prefix(false, Source::kMutate, false, 99)},
      {"mutate-payload-bit-resend", prefix(true, Source::kMutate, false, 5) + mutation(MutationOp::kFlipBit, 2, 40, 3)},
      {"mutate-header-bit", prefix(false, Source::kMutate, false, 5) + mutation(MutationOp::kFlipBit, 3, 9, 0)},
      {"mutate-swap", prefix(false, Source::kMutate, false, 1) + mutation(MutationOp::kSwapWithNext, 2, 0, 0)},
      {"mutate-duplicate", prefix(false, Source::kMutate, false, 1) + mutation(MutationOp::kDuplicateChunk, 4, 0, 0)},
      {"mutate-drop", prefix(false, Source::kMutate, false, 1) + mutation(MutationOp::kDropChunk, 5, 0, 0)},
      {"reframe-json-byte",
       prefix(false, Source::kMutateReframe, false, 3) + mutation(MutationOp::kSetByte, 1, 60, '9')},
      {"reframe-kv-count", prefix(false, Source::kMutateReframe, false, 3) + mutation(MutationOp::kSetByte, 2, 48, 3)},
      {"reframe-erase", prefix(false, Source::kMutateReframe, false, 3) + mutation(MutationOp::kEraseBytes, 4, 80, 8)},
      {"renumber-move", prefix(false, Source::kMutate, true, 3) + mutation(MutationOp::kMoveChunk, 4, 0, 1)},
      {"renumber-drop-end", prefix(false, Source::kMutate, true, 3) + mutation(MutationOp::kDropChunk, 7, 0, 0)},
      {"renumber-duplicate-seq",
       prefix(false, Source::kMutate, true, 3) + mutation(MutationOp::kDuplicateChunk, 1, 0, 0)},
  };
  for (const auto& [name, bytes] : seeds) {
    std::ofstream f(std::string(argv[1]) + "/" + name, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      std::fprintf(stderr, "cannot write %s/%s\n", argv[1], name.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), argv[1]);
  return 0;
}
