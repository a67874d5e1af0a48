// Two implementations of one function. The portable path is slicing-by-8: eight 256-entry
// tables let one step fold 8 input bytes with 8 independent lookups. The hardware path runs
// SSE4.2's crc32 instruction on three independent streams at once (the instruction has a
// latency of 3 cycles and a throughput of 1), then joins the three CRCs: a CRC register is linear
// in its input, so crc(A || B) = shift(crc(A), |B|) ^ crc(B), where shift() appends |B| zero
// bytes and is a fixed 32x32 bit matrix for a fixed |B|, applied here as four byte tables.
#include "agent/migration/crc32c.h"

#include <algorithm>
#include <array>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define HOTSWAP_CRC32C_X86 1
#endif

namespace hotswap::migration {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // Castagnoli, reflected

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (size_t s = 1; s < 8; ++s) {
    for (uint32_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
}

constexpr Tables kTables = make_tables();

inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

#ifdef HOTSWAP_CRC32C_X86

// Stream lengths of the three-way hardware loop; the join costs four lookups per stream.
constexpr size_t kLongBytes = 8192;
constexpr size_t kShortBytes = 256;

// shift(crc, n): the raw CRC register after n zero bytes, as four byte-indexed tables.
struct ZeroShift {
  std::array<std::array<uint32_t, 256>, 4> table{};

  explicit ZeroShift(size_t n_zero_bytes) {
    // The image of each basis bit, by running the register through the zero bytes.
    uint32_t image[32];
    for (int bit = 0; bit < 32; ++bit) {
      uint32_t c = uint32_t{1} << bit;
      for (size_t i = 0; i < n_zero_bytes; ++i) c = kTables[0][c & 0xff] ^ (c >> 8);
      image[bit] = c;
    }
    for (int byte = 0; byte < 4; ++byte) {
      for (uint32_t v = 0; v < 256; ++v) {
        uint32_t out = 0;
        for (int b = 0; b < 8; ++b) {
          if (v & (1u << b)) out ^= image[byte * 8 + b];
        }
        table[byte][v] = out;
      }
    }
  }

  uint32_t apply(uint32_t crc) const {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
  }
};

const ZeroShift& long_shift() {
  static const ZeroShift shift(kLongBytes);
  return shift;
}

const ZeroShift& short_shift() {
  static const ZeroShift shift(kShortBytes);
  return shift;
}

inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // x86 is little-endian
  return v;
}

inline void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

// Three streams of `stream` bytes each from p: the register after all 3 * stream bytes. With
// kCopy each word read is also stored at the same offset from d: the copy costs a store per
// crc32, and src is read once (a copy, then a checksum pass, ran at a third less, since each
// pass is bound by its own port).
template <bool kCopy>
__attribute__((target("sse4.2"))) uint64_t crc_three_streams(uint64_t c0, const uint8_t* p, uint8_t* d,
                                                             size_t stream, const ZeroShift& shift) {
  uint64_t c1 = 0, c2 = 0;
  const uint8_t* end = p + stream;
  while (p < end) {
    const uint64_t v0 = load_u64(p), v1 = load_u64(p + stream), v2 = load_u64(p + 2 * stream);
    c0 = _mm_crc32_u64(c0, v0);
    c1 = _mm_crc32_u64(c1, v1);
    c2 = _mm_crc32_u64(c2, v2);
    if constexpr (kCopy) {
      store_u64(d, v0);
      store_u64(d + stream, v1);
      store_u64(d + 2 * stream, v2);
      d += 8;
    }
    p += 8;
  }
  uint32_t c = shift.apply(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
  return shift.apply(c) ^ static_cast<uint32_t>(c2);
}

// The CRC of p[0..n) extended from crc; with kCopy, p[0..n) is also copied to d.
template <bool kCopy>
__attribute__((target("sse4.2"))) uint32_t crc_sse42(uint32_t crc, const uint8_t* p, uint8_t* d, size_t n) {
  uint64_t c = ~crc;
  // Bytes up to 8-byte alignment of p, then three-stream runs, then words, then bytes.
  size_t head = std::min(n, (8 - (reinterpret_cast<uintptr_t>(p) & 7)) & 7);
  n -= head;
  for (; head > 0; --head) {
    if constexpr (kCopy) *d++ = *p;
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
  }
  for (size_t bytes : {kLongBytes, kShortBytes}) {
    if (n < 3 * bytes) continue;
    const ZeroShift& shift = bytes == kLongBytes ? long_shift() : short_shift();
    do {
      c = crc_three_streams<kCopy>(c, p, d, bytes, shift);
      p += 3 * bytes;
      if constexpr (kCopy) d += 3 * bytes;
      n -= 3 * bytes;
    } while (n >= 3 * bytes);
  }
  for (; n >= 8; n -= 8) {
    const uint64_t v = load_u64(p);
    c = _mm_crc32_u64(c, v);
    if constexpr (kCopy) {
      store_u64(d, v);
      d += 8;
    }
    p += 8;
  }
  for (; n > 0; --n) {
    if constexpr (kCopy) *d++ = *p;
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
  }
  return ~static_cast<uint32_t>(c);
}

#endif  // HOTSWAP_CRC32C_X86

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

ExtendFn pick_extend() {
  return crc32c_hardware_available() ? &crc32c_extend_hardware : &crc32c_extend_portable;
}

}  // namespace

uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  const Tables& t = kTables;
  uint32_t c = ~crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    --n;
  }
  while (n >= 8) {
    uint32_t lo = c ^ load_le32(p);
    uint32_t hi = load_le32(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
        t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    --n;
  }
  return ~c;
}

bool crc32c_hardware_available() {
#ifdef HOTSWAP_CRC32C_X86
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
#else
  return false;
#endif
}

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) {
#ifdef HOTSWAP_CRC32C_X86
  return crc_sse42<false>(crc, static_cast<const uint8_t*>(data), nullptr, n);
#else
  return crc32c_extend_portable(crc, data, n);
#endif
}

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  static const ExtendFn extend = pick_extend();
  return extend(crc, data, n);
}

uint32_t crc32c(const void* data, size_t n) {
  return crc32c_extend(0, data, n);
}

uint32_t crc32c_copy(void* dst, const void* src, size_t n, uint32_t crc) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
#ifdef HOTSWAP_CRC32C_X86
  if (crc32c_hardware_available()) return crc_sse42<true>(crc, s, d, n);
#endif
  // Small enough that a step is still in L1 when the checksum reads it back.
  constexpr size_t kStepBytes = 16u << 10;
  while (n > 0) {
    const size_t k = std::min(n, kStepBytes);
    std::memcpy(d, s, k);
    crc = crc32c_extend(crc, d, k);
    d += k;
    s += k;
    n -= k;
  }
  return crc;
}

}  // namespace hotswap::migration
