#include "agent/engine/text_stream.h"

#include <gtest/gtest.h>

namespace hotswap::engine {
namespace {

TEST(TextStream, HoldsBackAPossibleStopStringPrefix) {
  TextStream s({"STOP"});
  EXPECT_EQ(s.append("hello S").text, "hello ");
  EXPECT_EQ(s.append("T").text, "");
  auto up = s.append("x");  // "STx" is not a stop: released
  EXPECT_EQ(up.text, "STx");
  EXPECT_FALSE(up.stopped);
  up = s.append(" and ST");
  EXPECT_EQ(up.text, " and ");
  up = s.append("OP more");
  EXPECT_TRUE(up.stopped);
  EXPECT_EQ(up.text, "");
  EXPECT_EQ(s.bytes(), "hello STx and ");
}

TEST(TextStream, StopStringInsideOneTokenCutsThere) {
  TextStream s({"\n\n"});
  auto up = s.append("line one\n\nline two");
  EXPECT_TRUE(up.stopped);
  EXPECT_EQ(up.text, "line one");
}

TEST(TextStream, HoldsBackIncompleteUtf8) {
  TextStream s;
  std::string euro = "\xE2\x82\xAC";  // U+20AC
  EXPECT_EQ(s.append("a" + euro.substr(0, 1)).text, "a");
  EXPECT_EQ(s.append(euro.substr(1, 1)).text, "");
  EXPECT_EQ(s.append(euro.substr(2)).text, euro);
  EXPECT_EQ(s.emitted(), 4u);
}

TEST(TextStream, FlushReplacesATruncatedCharacter) {
  TextStream s;
  EXPECT_EQ(s.append("ok\xF0\x9F").text, "ok");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");
}

TEST(Utf8, CompletePrefixExcludesATruncatedCharacter) {
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x9A"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xFF"), 3u);  // invalid, not incomplete: shown (as U+FFFD)
  EXPECT_EQ(utf8_complete_prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xE2\x82\xAC"), 5u);
}

}  // namespace
}  // namespace hotswap::engine
