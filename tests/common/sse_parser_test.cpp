#include "common/sse_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hotswap {
namespace {

std::vector<SseEvent> parse_in_pieces(const std::string& stream, const std::vector<size_t>& cuts) {
  SseParser p;
  std::vector<SseEvent> out;
  size_t from = 0;
  for (size_t cut : cuts) {
    EXPECT_TRUE(p.feed(std::string_view(stream).substr(from, cut - from), out).ok());
    from = cut;
  }
  EXPECT_TRUE(p.feed(std::string_view(stream).substr(from), out).ok());
  return out;
}

void expect_same(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].has_id, b[i].has_id) << what << " event " << i;
    EXPECT_EQ(a[i].id, b[i].id) << what << " event " << i;
    EXPECT_EQ(a[i].type, b[i].type) << what << " event " << i;
    EXPECT_EQ(a[i].data, b[i].data) << what << " event " << i;
  }
}

// Every kind of line the parser meets, with all three line ends.
const std::string kMixedStream =
    ": keep-alive\r\n\r\n"
    "id: 0\r\ndata: {\"a\":1}\r\n\r\n"
    "id:1\ndata:{\"b\":2}\n\n"
    "id: 2\rdata: first\rdata: second\r\r"
    "event: note\nid: 3\ndata:\n\n"
    "retry: 100\nid: 4\ndata: [DONE]\n\n";

TEST(SseParser, ParsesTheMixedStreamIntoItsEvents) {
  auto events = parse_in_pieces(kMixedStream, {});
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].id, "0");
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[1].id, "1");
  EXPECT_EQ(events[1].data, "{\"b\":2}");
  EXPECT_EQ(events[2].data, "first\nsecond");
  EXPECT_EQ(events[3].type, "note");
  EXPECT_EQ(events[3].data, "");
  EXPECT_EQ(events[4].id, "4");
  EXPECT_EQ(events[4].data, "[DONE]");
  for (const auto& e : events) EXPECT_TRUE(e.has_id);
}

TEST(SseParser, ByteByByteFeedGivesTheSameEventsAsOneFeed) {
  auto whole = parse_in_pieces(kMixedStream, {});
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < kMixedStream.size(); ++i) every_byte.push_back(i);
  expect_same(whole, parse_in_pieces(kMixedStream, every_byte), "byte by byte");
}

TEST(SseParser, EveryTwoWaySplitGivesTheSameEvents) {
  auto whole = parse_in_pieces(kMixedStream, {});
  for (size_t cut = 0; cut <= kMixedStream.size(); ++cut)
    expect_same(whole, parse_in_pieces(kMixedStream, {cut}), "cut at " + std::to_string(cut));
}

TEST(SseParser, CrLfSplitBetweenFeedsIsOneLineEnd) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.feed("id: 7\r", out).ok());
  ASSERT_TRUE(p.feed("\ndata: x\r", out).ok());
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(p.feed("\n\r", out).ok());  // "\r\n" ends the data line, "\r" the event
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, "7");
  EXPECT_EQ(out[0].data, "x");
  ASSERT_TRUE(p.feed("\n", out).ok());  // the "\n" of that "\r\n": no second blank line
  EXPECT_EQ(out.size(), 1u);
  EXPECT_FALSE(p.mid_event());
}

TEST(SseParser, MultiLineDataIsJoinedWithNewlines) {
  auto events = parse_in_pieces("data: a\ndata: b\ndata:\ndata: c\n\n", {});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a\nb\n\nc");
}

TEST(SseParser, OnlyOneSpaceAfterTheColonIsRemoved) {
  auto events = parse_in_pieces("data:  two spaces\n\ndata:none\n\n", {});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, " two spaces");
  EXPECT_EQ(events[1].data, "none");
}

TEST(SseParser, CommentsAndEventsWithoutDataAreNotDispatched) {
  auto events = parse_in_pieces(": ping\n\nid: 5\n\nevent: x\n\n\n\n", {});
  EXPECT_TRUE(events.empty());
}

TEST(SseParser, IdBelongsToItsEventOnly) {
  auto events = parse_in_pieces("id: 1\ndata: a\n\ndata: b\n\n", {});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[0].has_id);
  EXPECT_FALSE(events[1].has_id);  // a browser would repeat "1"; a strict checker must not
}

TEST(SseParser, StreamCutInsideAnEventIsMidEvent) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.feed("id: 1\ndata: {\"a\"", out).ok());
  EXPECT_TRUE(p.mid_event());
  ASSERT_TRUE(p.feed(":1}\n", out).ok());
  EXPECT_TRUE(p.mid_event());  // fields without their blank line
  ASSERT_TRUE(p.feed("\n", out).ok());
  EXPECT_FALSE(p.mid_event());
  EXPECT_EQ(out.size(), 1u);
}

TEST(SseParser, OversizedEventIsAStickyError) {
  SseParser p(64);
  std::vector<SseEvent> out;
  EXPECT_TRUE(p.feed("data: " + std::string(40, 'x') + "\n", out).ok());
  Status st = p.feed("data: " + std::string(40, 'y') + "\n", out);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_FALSE(p.feed("\n", out).ok());
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace hotswap
