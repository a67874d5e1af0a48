// GPT-2's byte alphabet, UTF-8 replacement as Python/Rust do it, and Pcre2Regex's match iteration.
#include "agent/engine/byte_level.h"

#include <gtest/gtest.h>

#include "agent/engine/pcre2_regex.h"

namespace hotswap::engine {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(ByteLevel, MapsBytesLikeGpt2BytesToUnicode) {
  EXPECT_EQ(byte_level_char('a'), "a");
  EXPECT_EQ(byte_level_char('!'), "!");
  EXPECT_EQ(byte_level_char(0x00), "\u0100");  // Ā
  EXPECT_EQ(byte_level_char(' '), "\u0120");   // Ġ
  EXPECT_EQ(byte_level_char('\n'), "\u010A");  // Ċ
  EXPECT_EQ(byte_level_char(0x7F), "\u0121");
  EXPECT_EQ(byte_level_char(0xA0), "\u0142");
  EXPECT_EQ(byte_level_char(0xAD), "\u0143");
  EXPECT_EQ(byte_level_char(0xA1), "\u00A1");  // printable Latin-1 stands for itself
  EXPECT_EQ(byte_level_char(0xFF), "\u00FF");
}

TEST(ByteLevel, EncodeThenDecodeGivesEveryByteBack) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(byte_level_decode(byte_level_encode(all)), all);
  EXPECT_EQ(byte_level_decode("Ġhello"), " hello");
  EXPECT_EQ(byte_level_decode("hello world"), std::nullopt);  // ' ' is not a byte-level character
  EXPECT_EQ(byte_level_decode("\xff"), std::nullopt);
}

TEST(Utf8Lossy, ReplacesEachMaximalIllFormedSubpart) {
  EXPECT_EQ(utf8_lossy("plain é 中 🚀"), "plain é 中 🚀");
  EXPECT_EQ(utf8_lossy("\xff"), kReplacement);
  EXPECT_EQ(utf8_lossy("\xC3"), kReplacement);      // truncated 2-byte
  EXPECT_EQ(utf8_lossy("\xE2\x82"), kReplacement);  // truncated 3-byte: one subpart
  EXPECT_EQ(utf8_lossy("\xE2\x82x"), kReplacement + "x");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x9A"), kReplacement);                                // truncated 4-byte
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), kReplacement + kReplacement);                     // overlong
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);  // surrogate
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), kReplacement + kReplacement + kReplacement + kReplacement);
  EXPECT_EQ(utf8_lossy("\x80\x80"), kReplacement + kReplacement);
}

TEST(Utf8SequenceLength, DecodesWellFormedAndRejectsIllFormed) {
  char32_t cp = 0;
  EXPECT_EQ(utf8_sequence_length("é", 0, &cp), 2u);
  EXPECT_EQ(cp, U'é');
  EXPECT_EQ(utf8_sequence_length("🚀", 0, &cp), 4u);
  EXPECT_EQ(cp, U'🚀');
  EXPECT_EQ(utf8_sequence_length("\xE0\x80\x80", 0), 0u);
  EXPECT_EQ(utf8_sequence_length("a", 1), 0u);
}

TEST(Pcre2Regex, FindAllSkipsEmptyMatchRightAfterPreviousMatch) {
  auto regex = Pcre2Regex::compile("x*");
  ASSERT_TRUE(regex.ok());
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(regex->find_all("axb"), (Ranges{{0, 0}, {1, 2}, {3, 3}}));
}

TEST(Pcre2Regex, NeverMatchesIllFormedUtf8) {
  auto regex = Pcre2Regex::compile(R"([^\s\p{L}\p{N}]+|\p{L}+)");
  ASSERT_TRUE(regex.ok());
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(regex->find_all("ab\xff!c"), (Ranges{{0, 2}, {3, 4}, {4, 5}}));
}

TEST(Pcre2Regex, CompileErrorNamesOffset) {
  auto regex = Pcre2Regex::compile("a(b");
  ASSERT_FALSE(regex.ok());
  EXPECT_EQ(regex.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(regex.status().message().find("offset 3"), std::string::npos) << regex.status().message();
}

}  // namespace
}  // namespace hotswap::engine
