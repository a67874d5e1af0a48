#include "e2e/loadgen/stream_recorder.h"

#include <gtest/gtest.h>

#include "tests/e2e/loadgen/sse_script.h"

namespace hotswap::loadgen {
namespace {

using fake::chat_chunk;
using fake::completion_chunk;
using fake::sse;

const Clock::time_point t0 = Clock::time_point() + std::chrono::seconds(100);

RequestResult record(const std::string& stream, bool chat = false) {
  CompletionStreamRecorder rec(chat);
  rec.on_bytes(stream, t0);
  RequestResult r;
  r.sent = t0;
  rec.finish(r);
  return r;
}

TEST(CompletionStreamRecorder, RecordsTokensTextAndFinishReason) {
  std::string s = sse(0, completion_chunk("Hel", {1})) + sse(1, completion_chunk("lo", {2, 3})) +
                  sse(2, completion_chunk("", {}, "length")) +
                  sse(3, R"({"id":"cmpl-test","object":"text_completion","created":1,"model":"m","choices":[],)"
                         R"("usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}})") +
                  sse(4, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.token_ids, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(r.text, "Hello");
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.events, 5);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.token_arrivals.size(), 3u);
  EXPECT_EQ(r.id_anomalies(), 0);
}

TEST(CompletionStreamRecorder, ChatTakesTextFromDeltaContent) {
  std::string first_chat_chunk =
      R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,)"
      R"("delta":{"role":"assistant"},"token_ids":[],"logprobs":null,"finish_reason":null}]})";
  std::string s = sse(0, first_chat_chunk) + sse(1, chat_chunk("Hi", {5})) + sse(2, chat_chunk(" there", {6}, "stop")) +
                  sse(3, "[DONE]");
  RequestResult r = record(s, /*chat=*/true);
  EXPECT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.text, "Hi there");
  EXPECT_EQ(r.token_ids, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(r.finish_reason, "stop");
}

TEST(CompletionStreamRecorder, TokenTimeIsWhenItsEventCompleted) {
  CompletionStreamRecorder rec(false);
  std::string event = sse(0, completion_chunk("a", {9}));
  const auto t1 = t0 + std::chrono::milliseconds(5), t2 = t0 + std::chrono::milliseconds(30);
  rec.on_bytes(event.substr(0, event.size() - 1), t1);  // all but the blank line's "\n"
  rec.on_bytes(event.substr(event.size() - 1) + sse(1, "[DONE]"), t2);
  RequestResult r;
  r.sent = t0;
  rec.finish(r);
  ASSERT_EQ(r.token_arrivals.size(), 1u);
  EXPECT_EQ(r.token_arrivals[0], t2);
  EXPECT_DOUBLE_EQ(*r.ttft_ms(), 30.0);
}

TEST(CompletionStreamRecorder, InterTokenGapsComeFromArrivalTimes) {
  CompletionStreamRecorder rec(false);
  rec.on_bytes(sse(0, completion_chunk("a", {1})), t0 + std::chrono::milliseconds(10));
  rec.on_bytes(sse(1, completion_chunk("b", {2})), t0 + std::chrono::milliseconds(25));
  rec.on_bytes(sse(2, completion_chunk("c", {3})) + sse(3, "[DONE]"), t0 + std::chrono::milliseconds(65));
  RequestResult r;
  r.sent = t0;
  rec.finish(r);
  std::vector<double> gaps;
  r.append_gaps_ms(gaps);
  EXPECT_EQ(gaps, (std::vector<double>{15.0, 40.0}));
  EXPECT_EQ(r.token_times_ms(), (std::vector<double>{10.0, 25.0, 65.0}));
}

TEST(CompletionStreamRecorder, StreamWithoutDoneIsNoDone) {
  RequestResult r = record(sse(0, completion_chunk("a", {1})));
  EXPECT_EQ(r.outcome, Outcome::kNoDone);
  EXPECT_EQ(r.token_ids.size(), 1u);
}

TEST(CompletionStreamRecorder, StreamCutMidEventIsNoDone) {
  RequestResult r = record(sse(0, completion_chunk("a", {1})) + "id: 1\ndata: {\"id\"");
  EXPECT_EQ(r.outcome, Outcome::kNoDone);
  EXPECT_NE(r.error.find("inside an event"), std::string::npos) << r.error;
}

TEST(CompletionStreamRecorder, UnparsableDataIsBadJsonAndLaterTokensStillCount) {
  std::string s = sse(0, "{not json") + sse(1, completion_chunk("a", {1})) + sse(2, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kBadJson);
  EXPECT_EQ(r.token_ids, (std::vector<int64_t>{1}));
}

TEST(CompletionStreamRecorder, ChunkWithoutTokenIdsIsBadJson) {
  std::string s = sse(0, R"({"choices":[{"index":0,"text":"a","finish_reason":null}]})") + sse(1, "[DONE]");
  EXPECT_EQ(record(s).outcome, Outcome::kBadJson);
}

TEST(CompletionStreamRecorder, ErrorObjectInTheStreamIsAStreamError) {
  std::string s = sse(0, completion_chunk("a", {1})) +
                  sse(1, R"({"error":{"message":"engine failed","type":"server_error","param":null,"code":null}})") +
                  sse(2, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kStreamError);
  EXPECT_NE(r.error.find("engine failed"), std::string::npos);
}

TEST(CompletionStreamRecorder, DuplicatedIdFailsTheRequestAndKeepsBothTokens) {
  std::string s = sse(0, completion_chunk("a", {1})) + sse(1, completion_chunk("b", {2})) +
                  sse(1, completion_chunk("b", {2})) + sse(2, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kEventIds);
  EXPECT_EQ(r.duplicate_ids, 1);
  EXPECT_EQ(r.missing_ids, 0);
  EXPECT_EQ(r.token_ids, (std::vector<int64_t>{1, 2, 2}));
}

TEST(CompletionStreamRecorder, SkippedIdIsMissing) {
  std::string s = sse(0, completion_chunk("a", {1})) + sse(2, completion_chunk("c", {3})) + sse(3, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kEventIds);
  EXPECT_EQ(r.missing_ids, 1);
}

TEST(CompletionStreamRecorder, EventWithoutIdOrWithABadIdIsAnAnomaly) {
  std::string s = "data: " + completion_chunk("a", {1}) + "\n\n" + "id: x1\ndata: " + completion_chunk("b", {2}) +
                  "\n\n" + sse(0, "[DONE]");
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kEventIds);
  EXPECT_EQ(r.events_without_id, 1);
  EXPECT_EQ(r.bad_ids, 1);
}

TEST(CompletionStreamRecorder, EventsAfterDoneAreAnomalies) {
  std::string s = sse(0, completion_chunk("a", {1})) + sse(1, "[DONE]") + sse(2, completion_chunk("b", {2}));
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kEventIds);
  EXPECT_EQ(r.events_after_done, 1);
  EXPECT_EQ(r.token_ids.size(), 1u);  // nothing taken after [DONE]
}

TEST(CompletionStreamRecorder, KeepAliveCommentsAndCrLfAreAccepted) {
  std::string s = ": keep-alive\r\n\r\nid:0\r\ndata:" + completion_chunk("a", {1}) + "\r\n\r\n" + ": keep-alive\n\n" +
                  "id: 1\r\ndata: [DONE]\r\n\r\n";
  RequestResult r = record(s);
  EXPECT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.events, 2);
}

TEST(OutcomeKey, NamesHttpStatusWithItsCode) {
  EXPECT_EQ(outcome_key(Outcome::kHttpStatus, 429), "http_429");
  EXPECT_EQ(outcome_key(Outcome::kNoDone, 0), "no_done");
  EXPECT_EQ(outcome_key(Outcome::kOk, 200), "ok");
}

}  // namespace
}  // namespace hotswap::loadgen
