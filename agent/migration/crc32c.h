// CRC32C (Castagnoli): the checksum of every snapshot chunk's header and payload.
//
// Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF (as in iSCSI, ext4,
// LevelDB): crc32c("123456789") == 0xE3069283. Two paths compute the same function: SSE4.2's
// crc32 instruction (about 8 bytes per cycle-and-a-bit), chosen at run time when the CPU has it,
// and a portable slicing-by-8 table path for every other CPU. The library is not compiled with
// -msse4.2; only the one function that uses the instruction is.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hotswap::migration {

// The CRC32C of data[0..n).
uint32_t crc32c(const void* data, size_t n);

// Extends a finished CRC32C with more bytes: crc32c_extend(crc32c(a), b) == crc32c(a + b), and
// crc32c_extend(0, b) == crc32c(b). For checksums over data that arrives in pieces.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

// Copies n bytes from src to dst and returns crc32c_extend(crc, src, n), reading src once: the
// checksum runs over each cache-sized step of dst just after it is written. The ranges must not
// overlap.
uint32_t crc32c_copy(void* dst, const void* src, size_t n, uint32_t crc = 0);

// The two paths, for tests and benchmarks. crc32c_extend() picks one of them.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n);
// Only when crc32c_hardware_available().
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n);
// True when this CPU has SSE4.2 (and this is an x86 build).
bool crc32c_hardware_available();

}  // namespace hotswap::migration
