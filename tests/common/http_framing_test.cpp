// common/http_framing: where HTTP/1.1 messages begin and end, fed whole or byte by byte, and
// the framings it refuses (the ambiguous ones request smuggling needs, and oversized heads).
#include "common/http_framing.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>

namespace hotswap::http {
namespace {

using Side = MessageFramer::Side;

// Feeds text in pieces of `step` bytes and sums what the pieces found.
MessageFramer::Progress feed_in_steps(MessageFramer& f, const std::string& text, size_t step) {
  MessageFramer::Progress total;
  for (size_t i = 0; i < text.size(); i += step) {
    auto p = f.feed(text.data() + i, std::min(step, text.size() - i));
    total.heads += p.heads;
    total.messages += p.messages;
    total.head_requests.insert(total.head_requests.end(), p.head_requests.begin(), p.head_requests.end());
    if (p.error_status) {
      total.error_status = p.error_status;
      total.error = p.error;
      break;
    }
  }
  return total;
}

const std::string kPipelined =
    "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"x\": 1234}"
    "\r\n"  // a stray line between requests is allowed
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4;ext=1\r\nabcd\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"
    "GET /g HTTP/1.1\r\nHost: a\r\n\r\n";

TEST(MessageFramer, FindsEveryRequestOfAPipelineWholeOrByteByByte) {
  for (size_t step : {kPipelined.size(), size_t{1}, size_t{3}, size_t{17}}) {
    MessageFramer f(Side::kRequest, 1024);
    auto p = feed_in_steps(f, kPipelined, step);
    EXPECT_EQ(p.error_status, 0) << p.error;
    EXPECT_EQ(p.heads, 4) << "step " << step;
    EXPECT_EQ(p.messages, 4) << "step " << step;
    EXPECT_EQ(p.head_requests, (std::vector<bool>{false, false, true, false})) << "step " << step;
    EXPECT_TRUE(f.idle());
  }
}

TEST(MessageFramer, SaysWhetherItIsInAHeadOrABody) {
  MessageFramer f(Side::kRequest, 1024);
  EXPECT_TRUE(f.idle());
  const std::string start = "POST / HTTP/1.1\r\nContent-";
  f.feed(start.data(), start.size());
  EXPECT_TRUE(f.in_head());
  const std::string rest = "Length: 5\r\n\r\nab";
  auto p = f.feed(rest.data(), rest.size());
  EXPECT_EQ(p.heads, 1);
  EXPECT_EQ(p.messages, 0);
  EXPECT_TRUE(f.in_body());
  p = f.feed("cde", 3);
  EXPECT_EQ(p.messages, 1);
  EXPECT_TRUE(f.idle());
}

TEST(MessageFramer, RefusesAmbiguousOrMalformedFramingNamingIt) {
  struct Case {
    std::string text, error;
    int status;
  };
  const std::vector<Case> cases = {
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "two different Content-Length", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", "Content-Length is not a number: '3x'", 400},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "Content-Length is not a number", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "only the chunked transfer coding", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "only the chunked", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a chunk size is not hexadecimal: 'zz'", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "a chunk's data is not followed by CRLF", 400},
      {"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", "folded", 400},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "a header line has no name", 400},
      {"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", "a header name has white space", 400},
      {"GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", "the head is longer than 1024 bytes", 431},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(2000, '1'), "a chunk-size line is longer", 400},
  };
  for (const auto& c : cases) {
    for (size_t step : {c.text.size(), size_t{1}}) {
      MessageFramer f(Side::kRequest, 1024);
      auto p = feed_in_steps(f, c.text, step);
      EXPECT_EQ(p.error_status, c.status) << c.text;
      EXPECT_NE(p.error.find(c.error), std::string::npos) << p.error;
      EXPECT_NE(p.error.find("(at byte "), std::string::npos) << p.error;
      EXPECT_TRUE(f.failed());
      EXPECT_NE(f.feed("GET / HTTP/1.1\r\n\r\n", 18).error_status, 0) << "a failed framer reads nothing more";
    }
  }
}

TEST(MessageFramer, BoundsTheTrailersOfAChunkedBodyLikeAHead) {
  MessageFramer f(Side::kRequest, 256);
  std::string text = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  for (int i = 0; i < 20; ++i) text += "X-T: " + std::string(20, 'a') + "\r\n";
  auto p = f.feed(text.data(), text.size());
  EXPECT_EQ(p.error_status, 431);
  EXPECT_NE(p.error.find("the trailers are longer than 256 bytes"), std::string::npos) << p.error;
}

TEST(MessageFramer, FollowsResponsesInterimNoBodyHeadAndUntilClose) {
  std::deque<bool> answers_head;
  const std::string text =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  // answers a HEAD: no body follows
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\n0\r\n\r\n"
      "HTTP/1.1 200 OK\r\n\r\nuntil the server closes";
  for (size_t step : {text.size(), size_t{1}}) {
    answers_head = {false, false, true, false, false};
    MessageFramer g(Side::kResponse, 1024, [&] {
      const bool h = answers_head.front();
      answers_head.pop_front();
      return h;
    });
    auto p = feed_in_steps(g, text, step);
    EXPECT_EQ(p.error_status, 0) << p.error;
    EXPECT_EQ(p.heads, 5) << "the 100 is not a response of its own; step " << step;
    EXPECT_EQ(p.messages, 4) << "step " << step;
    EXPECT_EQ(g.phase(), MessageFramer::Phase::kUntilClose);
    EXPECT_TRUE(answers_head.empty());
  }
}

}  // namespace
}  // namespace hotswap::http
