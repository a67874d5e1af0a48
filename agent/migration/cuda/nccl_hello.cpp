// The nccl transport's hello (nccl_transport.h), built with or without NCCL.
#include <cstring>

#include "agent/migration/cuda/nccl_transport.h"
#include "agent/migration/little_endian.h"

namespace hotswap::migration {
namespace {

constexpr char kHelloMagic[4] = {'H', 'S', 'N', 'C'};
constexpr uint16_t kVersion = 1;

}  // namespace

std::array<uint8_t, kNcclHelloBytes> encode_nccl_hello(const NcclHello& hello) {
  std::array<uint8_t, kNcclHelloBytes> out{};
  std::memcpy(out.data(), kHelloMagic, 4);
  put_le16(out.data() + 4, kVersion);
  put_le64(out.data() + 8, hello.piece_bytes);
  put_le64(out.data() + 16, hello.window_bytes);
  std::memcpy(out.data() + 24, hello.unique_id.data(), kNcclUniqueIdBytes);
  return out;
}

StatusOr<NcclHello> decode_nccl_hello(const uint8_t* bytes) {
  if (std::memcmp(bytes, kHelloMagic, 4) != 0) {
    return data_loss("not an nccl migration target: its hello lacks the magic \"HSNC\"");
  }
  const uint16_t version = get_le16(bytes + 4);
  if (version != kVersion) {
    return failed_precondition("the nccl migration target speaks version " + std::to_string(version) +
                               "; this agent speaks " + std::to_string(kVersion));
  }
  NcclHello h;
  h.piece_bytes = get_le64(bytes + 8);
  h.window_bytes = get_le64(bytes + 16);
  if (h.piece_bytes < kMinNcclPieceBytes || h.piece_bytes > kMaxNcclPieceBytes) {
    return data_loss("the nccl migration target offers pieces of " + std::to_string(h.piece_bytes) +
                     " bytes, outside " + std::to_string(kMinNcclPieceBytes) + ".." +
                     std::to_string(kMaxNcclPieceBytes));
  }
  if (h.window_bytes < h.piece_bytes || h.window_bytes > 16 * h.piece_bytes) {
    return data_loss("the nccl migration target offers a window of " + std::to_string(h.window_bytes) +
                     " bytes for pieces of " + std::to_string(h.piece_bytes) + " (1 to 16 pieces)");
  }
  std::memcpy(h.unique_id.data(), bytes + 24, kNcclUniqueIdBytes);
  return h;
}

}  // namespace hotswap::migration
