#include "agent/engine/byte_level.h"

#include <array>

namespace hotswap::engine {
namespace {

struct ByteLevelTables {
  std::array<std::string, 256> char_of_byte;
  // Byte-level code points are all below U+0100 + 68.
  std::array<int16_t, 0x100 + 68> byte_of_code_point;

  ByteLevelTables() {
    byte_of_code_point.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    char32_t next_extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : next_extra++;
      append_utf8(char_of_byte[b], cp);
      byte_of_code_point[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables t;
  return t;
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const std::string& byte_level_char(uint8_t byte) {
  return tables().char_of_byte[byte];
}

std::optional<uint8_t> byte_level_byte(char32_t cp) {
  const auto& t = tables().byte_of_code_point;
  if (cp >= t.size() || t[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(t[cp]);
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& t = tables().char_of_byte;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += t[b];
  return out;
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t cp = 0;
    const size_t len = utf8_sequence_length(token, pos, &cp);
    if (len == 0) return std::nullopt;
    const auto byte = byte_level_byte(cp);
    if (!byte) return std::nullopt;
    out.push_back(static_cast<char>(*byte));
    pos += len;
  }
  return out;
}

namespace {

// Decodes at pos. Returns the sequence length when well formed; otherwise 0 and, in
// *subpart_len, the length of the maximal ill-formed subpart (at least 1).
size_t decode_utf8(std::string_view s, size_t pos, char32_t* cp_out, size_t* subpart_len) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(pos);
  if (subpart_len) *subpart_len = 1;
  if (b0 < 0x80) {
    if (cp_out) *cp_out = b0;
    return 1;
  }
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) return 0;
    const unsigned char b = byte(pos + k);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    cp = (cp << 6) | (b & 0x3F);
    if (subpart_len) *subpart_len = k + 1;
  }
  if (cp_out) *cp_out = cp;
  return need + 1;
}

}  // namespace

size_t utf8_sequence_length(std::string_view text, size_t pos, char32_t* code_point) {
  if (pos >= text.size()) return 0;
  return decode_utf8(text, pos, code_point, nullptr);
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t subpart = 1;
    const size_t len = decode_utf8(bytes, pos, nullptr, &subpart);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      out += "\xEF\xBF\xBD";
      pos += subpart;
    }
  }
  return out;
}

}  // namespace hotswap::engine
