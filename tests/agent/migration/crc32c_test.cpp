#include "agent/migration/crc32c.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <cstring>
#include <random>
#include <vector>

namespace hotswap::migration {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
  const char* check = "123456789";
  EXPECT_EQ(crc32c(check, 9), 0xE3069283u);
  EXPECT_EQ(crc32c_extend_portable(0, check, 9), 0xE3069283u);
}

// RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32c, MatchesTheIscsiVectors) {
  uint8_t buf[32];
  std::memset(buf, 0x00, sizeof buf);
  EXPECT_EQ(crc32c(buf, 32), 0x8A9136AAu);
  std::memset(buf, 0xFF, sizeof buf);
  EXPECT_EQ(crc32c(buf, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(buf, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(buf, 32), 0x113FDB5Cu);
}

TEST(Crc32c, EmptyInputIsZeroAndExtendsNothing) {
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  EXPECT_EQ(crc32c_extend(0xE3069283u, nullptr, 0), 0xE3069283u);
}

TEST(Crc32c, ExtendOverPiecesEqualsOneShot) {
  std::vector<uint8_t> data(1000);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const uint32_t whole = crc32c(data.data(), data.size());
  for (size_t split = 0; split <= data.size(); split += 37) {
    const uint32_t first = crc32c(data.data(), split);
    EXPECT_EQ(crc32c_extend(first, data.data() + split, data.size() - split), whole) << "split at " << split;
  }
}

// Sizes around the copy's 16 KiB steps, at odd offsets, extending a running CRC.
TEST(Crc32c, CopyCopiesAndChecksumsLikeExtend) {
  std::vector<uint8_t> src(100'000);
  std::mt19937 rng(11);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  for (const size_t n : {size_t{0}, size_t{1}, size_t{4095}, size_t{16384}, size_t{16385}, size_t{99'990}}) {
    std::vector<uint8_t> dst(n + 8, 0xee);
    const uint32_t seed = crc32c(src.data(), 5);
    EXPECT_EQ(crc32c_copy(dst.data() + 3, src.data() + 7, n, seed), crc32c_extend(seed, src.data() + 7, n))
        << n << " bytes";
    EXPECT_TRUE(std::equal(dst.begin() + 3, dst.begin() + 3 + static_cast<std::ptrdiff_t>(n), src.begin() + 7))
        << n << " bytes";
    EXPECT_EQ(dst[2], 0xee);
    EXPECT_EQ(dst[3 + n], 0xee);  // nothing past the end
  }
}

// crc32c_copy runs the fused hardware loop (each word checksummed and stored) when the CPU has
// SSE4.2: at every source and destination alignment and through both three-way loops, it copies
// exactly n bytes and its checksum is the portable path's.
TEST(Crc32c, CopyAtAnyAlignmentAndLengthAgreesWithThePortablePath) {
  std::mt19937_64 rng(99);
  std::vector<uint8_t> src(100 * 1024 + 16);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  for (int trial = 0; trial < 300; ++trial) {
    const size_t from = rng() % 16, to = rng() % 16;
    const size_t len = trial % 3 == 0 ? rng() % 64 : trial % 3 == 1 ? 24576 * (1 + rng() % 3) + rng() % 800
                                                                    : rng() % (100 * 1024);
    std::vector<uint8_t> dst(len + 32, 0xee);
    const uint32_t seed = static_cast<uint32_t>(rng());
    ASSERT_EQ(crc32c_copy(dst.data() + to, src.data() + from, len, seed),
              crc32c_extend_portable(seed, src.data() + from, len))
        << "from " << from << " to " << to << " length " << len;
    ASSERT_TRUE(std::equal(dst.begin() + static_cast<std::ptrdiff_t>(to),
                           dst.begin() + static_cast<std::ptrdiff_t>(to + len), src.begin() + static_cast<std::ptrdiff_t>(from)))
        << "from " << from << " to " << to << " length " << len;
    for (size_t i = 0; i < to; ++i) ASSERT_EQ(dst[i], 0xee) << "a byte before the destination";
    for (size_t i = to + len; i < dst.size(); ++i) ASSERT_EQ(dst[i], 0xee) << "a byte past the end";
  }
}

// Lengths up to 100 KiB reach the hardware path's three-way loops (768 and 24576 bytes) and
// their tails; offsets 0..15 cover every alignment of the head loop.
TEST(Crc32c, HardwareAndPortablePathsAgreeOnRandomData) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "this CPU has no SSE4.2; only the portable path runs here";
  std::mt19937_64 rng(12345);
  std::vector<uint8_t> buf(100 * 1024 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (int trial = 0; trial < 400; ++trial) {
    const size_t offset = rng() % 16;
    size_t len;
    switch (trial % 4) {
      case 0:
        len = rng() % 64;
        break;
      case 1:
        len = rng() % 2048;
        break;
      case 2:
        len = 24576 * (1 + rng() % 3) + rng() % 800;
        break;
      default:
        len = rng() % (100 * 1024);
        break;
    }
    const uint32_t seed = static_cast<uint32_t>(rng());
    ASSERT_EQ(crc32c_extend_hardware(seed, buf.data() + offset, len),
              crc32c_extend_portable(seed, buf.data() + offset, len))
        << "offset " << offset << " length " << len;
  }
}

TEST(Crc32c, DetectsEverySingleBitFlip) {
  std::vector<uint8_t> data(256);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13);
  const uint32_t good = crc32c(data.data(), data.size());
  for (size_t bit = 0; bit < data.size() * 8; ++bit) {
    data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    ASSERT_NE(crc32c(data.data(), data.size()), good) << "bit " << bit;
    data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace hotswap::migration
