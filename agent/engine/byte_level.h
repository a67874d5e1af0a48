// Byte-level BPE's alphabet and the UTF-8 helpers the tokenizer and the BPE trainer share.
//
// GPT-2's bytes_to_unicode gives each of the 256 bytes a printable character: the printable
// Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves and the other 68 bytes get
// U+0100.. in byte order (space is 'Ġ', '\n' is 'Ċ'). A byte-level vocabulary is written in these
// characters, so every byte string has an encoding and a decoding back to the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hotswap::engine {

// The character GPT-2's bytes_to_unicode assigns to `byte`, as UTF-8 (1 or 2 bytes).
const std::string& byte_level_char(uint8_t byte);

// The byte a byte-level character (a code point) stands for, or nullopt for any other code point.
std::optional<uint8_t> byte_level_byte(char32_t code_point);

// Maps every byte of `bytes` to its byte-level character.
std::string byte_level_encode(std::string_view bytes);

// The bytes a token string stands for when every character in it is a byte-level character;
// nullopt otherwise (HF's ByteLevel decoder then uses the token's own UTF-8 bytes).
std::optional<std::string> byte_level_decode(std::string_view token);

// Length of the well-formed UTF-8 sequence starting at `pos` (1..4), or 0 when the bytes there
// are not one (Unicode Table 3-7: no overlongs, no surrogates, nothing past U+10FFFF).
// `code_point` receives the decoded value when non-null and the sequence is well formed.
size_t utf8_sequence_length(std::string_view text, size_t pos, char32_t* code_point = nullptr);

// Replaces every maximal ill-formed subpart with U+FFFD, as Rust's String::from_utf8_lossy and
// Python's bytes.decode("utf-8", errors="replace") do. Well-formed input comes back unchanged.
std::string utf8_lossy(std::string_view bytes);

// Appends `code_point` encoded as UTF-8.
void append_utf8(std::string& out, char32_t code_point);

}  // namespace hotswap::engine
