// The migration transports end to end, tcp and tls (over 127.0.0.1), shm and loopback alike: a whole
// snapshot stream, the reply, and every way a transfer can go wrong (a corrupt payload that is
// resent, a corrupt header, a peer that disappears or never reads, aborts from either side), and
// the bandwidth cap.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <future>
#include <optional>
#include <thread>

#include "agent/migration/link_probe.h"
#include "agent/migration/loopback_transport.h"
#include "agent/migration/shm_transport.h"
#include "agent/migration/tcp_transport.h"
#include "tests/agent/migration/tls_test_util.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::BigStream;
using testing::Connected;
using testing::contains;
using testing::decode_reference;
using testing::expect_same_chunks;
using testing::make_big_stream;
using testing::receive_all;
using testing::Received;
using testing::send_stream;

enum class Kind { kTcp, kTls, kShm, kLoopback };

std::string kind_name(Kind k) {
  switch (k) {
    case Kind::kTcp:
      return "tcp";
    case Kind::kTls:
      return "tls";
    case Kind::kShm:
      return "shm";
    case Kind::kLoopback:
      return "loopback";
  }
  return "?";
}

class TransportTest : public ::testing::TestWithParam<Kind> {
 protected:
  Connected connect(SenderOptions sender_options = {}, ReceiverOptions receiver_options = {}) {
    Connected c;
    if (GetParam() == Kind::kLoopback) {
      auto t = make_loopback_transport(sender_options, receiver_options);
      c.sender = std::move(t.sender);
      c.receiver = std::move(t.receiver);
      return c;
    }
    if (GetParam() == Kind::kShm) return connect_shm(sender_options, receiver_options);
    auto listener = TcpListener::listen("127.0.0.1", 0);
    EXPECT_TRUE(listener.ok()) << listener.status().to_string();
    if (!listener.ok()) return c;
    // Over TLS the handshake needs both ends at once: the source connects on a thread of its own.
    if (GetParam() == Kind::kTls && !tls_) tls_ = testing::deployment_tls("transport-test");
    const TlsContext* tls = GetParam() == Kind::kTls ? tls_.get() : nullptr;
    auto connecting = std::async(std::launch::async, [&] {
      return tcp_connect("127.0.0.1", listener->port(), sender_options, 5s, tls);
    });
    auto receiver = listener->accept(5s, receiver_options, tls);
    auto sender = connecting.get();
    EXPECT_TRUE(sender.ok()) << sender.status().to_string();
    EXPECT_TRUE(receiver.ok()) << receiver.status().to_string();
    if (sender.ok()) c.sender = std::move(sender).value();
    if (receiver.ok()) c.receiver = std::move(receiver).value();
    return c;
  }

  // A socket in a private directory that the test removes; the listener removes its file first.
  Connected connect_shm(SenderOptions sender_options, ReceiverOptions receiver_options) {
    Connected c;
    if (!shm_dir_) {
      auto dir = ShmSocketDir::create("hotswap-transport-test");
      EXPECT_TRUE(dir.ok()) << dir.status().to_string();
      if (!dir.ok()) return c;
      shm_dir_.emplace(std::move(dir).value());
    }
    auto listener = ShmListener::listen(shm_dir_->socket_path("t" + std::to_string(shm_sockets_++) + ".sock"));
    EXPECT_TRUE(listener.ok()) << listener.status().to_string();
    if (!listener.ok()) return c;
    auto sender = shm_connect(listener->path(), sender_options, 5s);
    EXPECT_TRUE(sender.ok()) << sender.status().to_string();
    auto receiver = listener->accept(5s, receiver_options);
    EXPECT_TRUE(receiver.ok()) << receiver.status().to_string();
    if (sender.ok()) c.sender = std::move(sender).value();
    if (receiver.ok()) c.receiver = std::move(receiver).value();
    return c;
  }

  std::optional<ShmSocketDir> shm_dir_;
  int shm_sockets_ = 0;
  std::shared_ptr<const TlsContext> tls_;
};

// The offset of chunk `sequence`'s header in the stream.
uint64_t chunk_offset(const std::vector<DecodedChunk>& reference, size_t sequence) {
  return reference[sequence].stream_offset;
}

// The stream sent and flushed on this thread while a target thread receives all of it.
struct FlushedTransfer {
  Status sent, flushed;
  Received got;
};
FlushedTransfer send_flush_and_receive(Connected& c, const BigStream& stream) {
  FlushedTransfer t;
  std::jthread target([&] { t.got = receive_all(*c.receiver); });
  t.sent = send_stream(*c.sender, stream);
  t.flushed = t.sent.ok() ? c.sender->flush(10s) : t.sent;
  return t;  // the target thread joins first
}

// A corrupt payload chunk 4 was resent, whole, and what came is the reference, exactly.
void expect_resent_exact(const FlushedTransfer& t, const Connected& c, const std::vector<DecodedChunk>& reference) {
  ASSERT_TRUE(t.sent.ok()) << t.sent.to_string();
  ASSERT_TRUE(t.flushed.ok()) << t.flushed.to_string();
  ASSERT_TRUE(t.got.status.ok()) << t.got.status.to_string();
  expect_same_chunks(t.got.chunks, reference);
  const SenderStats s = c.sender->stats();
  EXPECT_EQ(s.resend_requests, 1u);
  EXPECT_GE(s.chunks_resent, 1u);  // chunk 4 and whatever was in flight behind it
  EXPECT_GE(s.bytes_resent, reference[4].payload.size() + kChunkHeaderBytes);
  EXPECT_EQ(s.bytes_sent, s.bytes_written + s.bytes_resent);
  EXPECT_EQ(c.receiver->stats().resend_requests, 1u);
}

TEST_P(TransportTest, WholeStreamArrivesExactAndTheReplyComesBack) {
  const BigStream stream = make_big_stream();
  const std::string bytes = stream.bytes();
  const auto reference = decode_reference(bytes);
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  Status reply_status;
  std::jthread target([&] {
    got = receive_all(*c.receiver);
    if (got.status.ok()) reply_status = c.receiver->reply(R"({"switched":true})", 5s);
  });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(send_stream(*c.sender, stream).ok());
  ASSERT_TRUE(c.sender->flush(10s).ok());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto reply = c.sender->await_reply(10s);
  target.join();

  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  EXPECT_TRUE(reply_status.ok()) << reply_status.to_string();
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, R"({"switched":true})");
  expect_same_chunks(got.chunks, reference);
  EXPECT_EQ(got.chunks.back().end->kv_bytes, static_cast<int64_t>(stream.pool.size()));

  const SenderStats s = c.sender->stats();
  EXPECT_EQ(s.bytes_written, bytes.size());
  EXPECT_EQ(s.chunks_written, reference.size());
  EXPECT_EQ(s.chunks_acknowledged, reference.size());
  EXPECT_EQ(s.bytes_acknowledged, bytes.size());
  EXPECT_EQ(s.bytes_sent, bytes.size());
  EXPECT_EQ(s.chunks_resent, 0u);
  EXPECT_EQ(s.resend_requests, 0u);
  EXPECT_GT(s.bytes_per_s, 0.0);
  const ReceiverStats r = c.receiver->stats();
  EXPECT_EQ(r.bytes_received, bytes.size());
  EXPECT_EQ(r.chunks_received, reference.size());
  EXPECT_GE(r.acks_sent, 1u);
  std::printf("[ transport ] %s: %.1f MiB in %.3f s: %.0f MB/s (stats: %.0f MB/s over %.3f s of wire time)\n",
              kind_name(GetParam()).c_str(), static_cast<double>(bytes.size()) / (1 << 20), seconds,
              static_cast<double>(bytes.size()) / seconds / 1e6, s.bytes_per_s / 1e6, s.wire_seconds);
  if (GetParam() == Kind::kTcp) {
    // The raw link in the same run, for comparison (a figure, not an assertion).
    auto raw = measure_tcp_loopback_bytes_per_s(bytes.size());
    ASSERT_TRUE(raw.ok()) << raw.status().to_string();
    std::printf("[ transport ] raw TCP over 127.0.0.1, same bytes: %.0f MB/s\n", *raw / 1e6);
  }
}

TEST_P(TransportTest, CorruptPayloadIsResentAndTheStreamCompletesExact) {
  const BigStream stream = make_big_stream(2, 64);
  const auto reference = decode_reference(stream.bytes());
  ASSERT_EQ(reference[4].kind, ChunkKind::kKvBlocks);
  // Near the payload's start (the receiver copies it from its read buffer) and deep inside it
  // (received in place, into the decoder's buffer).
  for (const uint64_t into_payload : {uint64_t{1000}, uint64_t{900} << 10}) {
    SCOPED_TRACE("flipped payload byte " + std::to_string(into_payload));
    ASSERT_LT(into_payload, reference[4].payload.size());
    SenderOptions options;
    options.fault.flip_byte_at = chunk_offset(reference, 4) + kChunkHeaderBytes + into_payload;
    Connected c = connect(options);
    ASSERT_TRUE(c.sender && c.receiver);
    expect_resent_exact(send_flush_and_receive(c, stream), c, reference);
  }
}

// KvBlocks given with an owner go from the owner's memory, not a copy in the window: a corrupt
// one is resent from there, the stream arrives exact, and once every chunk is acknowledged the
// sender holds no reference to the owner.
TEST_P(TransportTest, OwnedBlocksAreSentUncopiedResentExactAndReleasedOnceAcknowledged) {
  BigStream stream = make_big_stream(2, 64);
  stream.owned_pool = std::make_shared<const std::vector<uint8_t>>(stream.pool);
  const auto reference = decode_reference(stream.bytes());
  ASSERT_EQ(reference[4].kind, ChunkKind::kKvBlocks);
  uint64_t kv_chunk_bytes = 0, kv_payload_bytes = 0;
  for (const auto& c : reference)
    if (c.kind == ChunkKind::kKvBlocks) {
      kv_chunk_bytes += kChunkHeaderBytes + c.payload.size();
      kv_payload_bytes += c.payload.size();
    }
  SenderOptions options;
  options.fault.flip_byte_at = chunk_offset(reference, 4) + kChunkHeaderBytes + (300u << 10);
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);
  expect_resent_exact(send_flush_and_receive(c, stream), c, reference);
  const SenderStats s = c.sender->stats();
  // Every KvBlocks chunk's block bytes were borrowed: all of it but the headers and sub-headers.
  EXPECT_GT(s.bytes_borrowed, 0u);
  EXPECT_LT(s.bytes_borrowed, kv_chunk_bytes);
  EXPECT_GT(s.bytes_borrowed, kv_payload_bytes - (1u << 10));
  // The window dropped every acknowledged chunk, and with them the references.
  EXPECT_EQ(stream.owned_pool.use_count(), 1);
}

TEST_P(TransportTest, CorruptLastChunkIsTheOneChunkResent) {
  const BigStream stream = make_big_stream(1, 16);
  const auto reference = decode_reference(stream.bytes());
  const size_t last = reference.size() - 1;
  ASSERT_EQ(reference[last].kind, ChunkKind::kEnd);
  SenderOptions options;
  options.fault.flip_byte_at = chunk_offset(reference, last) + kChunkHeaderBytes + 2;
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  ASSERT_TRUE(send_stream(*c.sender, stream).ok());
  const Status flushed = c.sender->flush(10s);
  target.join();

  ASSERT_TRUE(flushed.ok()) << flushed.to_string();
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  expect_same_chunks(got.chunks, reference);
  const SenderStats s = c.sender->stats();
  EXPECT_EQ(s.resend_requests, 1u);
  EXPECT_EQ(s.chunks_resent, 1u);
  EXPECT_EQ(s.bytes_resent, kChunkHeaderBytes + reference[last].payload.size());
}

TEST_P(TransportTest, CorruptHeaderFailsBothSidesNamingTheChunkAndItsOffset) {
  const BigStream stream = make_big_stream(1, 64);
  const auto reference = decode_reference(stream.bytes());
  const uint64_t offset = chunk_offset(reference, 3);
  SenderOptions options;
  options.fault.flip_byte_at = offset + 17;  // the payload length
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(10s);
  target.join();

  EXPECT_EQ(got.status.code(), StatusCode::kDataLoss) << got.status.to_string();
  EXPECT_TRUE(contains(got.status.message(), "snapshot chunk 3 at byte " + std::to_string(offset)))
      << got.status.message();
  EXPECT_TRUE(contains(got.status.message(), "header CRC32C")) << got.status.message();
  EXPECT_EQ(got.chunks.size(), 3u);
  // The target told the source why.
  EXPECT_EQ(sent.code(), StatusCode::kDataLoss) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "aborted the transfer")) << sent.message();
  EXPECT_TRUE(contains(sent.message(), "snapshot chunk 3 at byte " + std::to_string(offset))) << sent.message();
}

TEST_P(TransportTest, SourceDroppingTheConnectionMidStreamFailsBothSides) {
  const BigStream stream = make_big_stream();
  SenderOptions options;
  options.fault.drop_after_bytes = 5'000'000;
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(5s);
  target.join();

  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "dropped the connection")) << sent.message();
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  // A source that vanishes closes its socket: the target reads the stream up to where it stopped,
  // or, over TCP, is reset when an acknowledgement reaches the dead socket first.
  const bool closed = contains(got.status.message(), "closed the connection before the stream ended") &&
                      contains(got.status.message(), "truncated in the payload");
  const bool reset =
      (GetParam() == Kind::kTcp || GetParam() == Kind::kTls) && contains(got.status.message(), "reset by peer");
  EXPECT_TRUE(closed || reset) << got.status.message();
  EXPECT_FALSE(got.chunks.empty());
}

TEST_P(TransportTest, TargetClosingMidStreamFailsTheSource) {
  const BigStream stream = make_big_stream();
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  Status first;
  std::jthread target([&] {
    for (int i = 0; i < 3; ++i) {
      auto chunk = c.receiver->next(5s);
      if (!chunk.ok()) {
        first = chunk.status();
        break;
      }
    }
    c.receiver.reset();  // the target process dies: its socket closes with bytes unread
  });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(5s);
  target.join();

  EXPECT_TRUE(first.ok()) << first.to_string();
  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_FALSE(contains(sent.message(), "timed out")) << sent.message();
}

TEST_P(TransportTest, TargetThatNeverReadsTimesOutTheWriteWhenTheWindowIsFull) {
  // A window of 1 KiB fills after a few small chunks, long before any socket buffer does.
  const std::string bytes = testing::sample_stream().bytes;
  SenderOptions options;
  options.resend_window_bytes = 1024;
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  const auto start = std::chrono::steady_clock::now();
  const Status sent = c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 300ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "timed out")) << sent.message();
  EXPECT_TRUE(contains(sent.message(), "resend window full")) << sent.message();
  const SenderStats s = c.sender->stats();
  EXPECT_GE(s.bytes_written, 1024u);
  EXPECT_LT(s.bytes_written, bytes.size());
  EXPECT_EQ(s.chunks_acknowledged, 0u);
}

TEST_P(TransportTest, TargetAbortReachesTheSourceWithItsCodeAndReason) {
  const BigStream stream = make_big_stream();
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  Status after_abort;
  std::jthread target([&] {
    auto manifest = c.receiver->next(5s);
    ASSERT_TRUE(manifest.ok()) << manifest.status().to_string();
    c.receiver->abort(failed_precondition("model digest mismatch: the target has weights abc, the source def"));
    after_abort = c.receiver->next(1s).status();
  });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(5s);
  target.join();

  EXPECT_EQ(sent.code(), StatusCode::kFailedPrecondition) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "aborted the transfer: model digest mismatch")) << sent.message();
  EXPECT_EQ(after_abort.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(after_abort.message(), "transfer aborted locally")) << after_abort.message();
  // Every later call says the same.
  EXPECT_TRUE(contains(sent.message(), c.sender->await_reply(1s).status().message()));
}

TEST_P(TransportTest, SourceAbortReachesTheTargetAfterTheChunksBeforeIt) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  const size_t four_chunks = reference[4].stream_offset;
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), four_chunks, 5s).ok());
  c.sender->abort(invalid_argument("the operator cancelled migration mig-0001"));

  const Received got = receive_all(*c.receiver, 5s);
  EXPECT_EQ(got.chunks.size(), 4u) << got.status.to_string();
  EXPECT_EQ(got.status.code(), StatusCode::kInvalidArgument) << got.status.to_string();
  EXPECT_TRUE(contains(got.status.message(), "aborted the transfer: the operator cancelled migration mig-0001"))
      << got.status.message();
  const Status later = c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()) + four_chunks, 1, 1s);
  EXPECT_EQ(later.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(later.message(), "transfer aborted locally")) << later.message();
}

// The source's last word after the reply: commit() closes the connection, which the target
// reads as consent (and an abort() after it sends nothing); an abort() before it reaches the
// target as "gave up" with its reason, and commit() then refuses, naming the abort.
TEST_P(TransportTest, AfterTheReplyTheTargetReadsTheSourcesVerdict) {
  const std::string bytes = testing::sample_stream().bytes;
  for (const bool gives_up : {false, true}) {
    SCOPED_TRACE(gives_up ? "the source gives up" : "the source takes the switch");
    Connected c = connect();
    ASSERT_TRUE(c.sender && c.receiver);
    EXPECT_EQ(c.receiver->await_verdict(100ms).gave_up, false) << "no verdict before End";
    std::promise<void> replied;
    SourceVerdict verdict;
    std::jthread target([&] {
      const Received got = receive_all(*c.receiver, 5s);
      EXPECT_TRUE(got.status.ok()) << got.status.to_string();
      EXPECT_TRUE(c.receiver->reply(R"({"switched":true})", 5s).ok());
      replied.set_value();
      verdict = c.receiver->await_verdict(5s);
    });
    ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
    ASSERT_TRUE(c.sender->flush(5s).ok());
    replied.get_future().wait();
    ASSERT_TRUE(c.sender->await_reply(5s).ok());
    if (gives_up) {
      c.sender->abort(unavailable("the switch's deadline of 300 ms passed"));
      const Status taken = c.sender->commit();
      EXPECT_FALSE(taken.ok());
      EXPECT_TRUE(contains(taken.message(), "the switch's deadline of 300 ms passed")) << taken.message();
    } else {
      EXPECT_TRUE(c.sender->commit().ok());
      EXPECT_TRUE(c.sender->commit().ok()) << "a second commit() changes nothing";
      c.sender->abort(unavailable("the agent is shutting down"));  // after the switch: nothing sent
    }
    target.join();
    EXPECT_EQ(verdict.gave_up, gives_up) << verdict.detail;
    if (gives_up) {
      EXPECT_TRUE(contains(verdict.detail, "aborted the transfer: the switch's deadline of 300 ms passed"))
          << verdict.detail;
    } else {
      EXPECT_TRUE(contains(verdict.detail, "closed the connection after the reply")) << verdict.detail;
    }
  }
}

TEST_P(TransportTest, CommitBeforeTheReplyIsRefused) {
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);
  const Status taken = c.sender->commit();
  EXPECT_EQ(taken.code(), StatusCode::kFailedPrecondition) << taken.to_string();
  EXPECT_TRUE(contains(taken.message(), "commit() before the reply")) << taken.message();
}

// A target that waits for the verdict of a source that says nothing keeps the switch after
// its timeout, and says so.
TEST_P(TransportTest, AVerdictThatDoesNotComeLeavesTheSwitchStanding) {
  const std::string bytes = testing::sample_stream().bytes;
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
  const Received got = receive_all(*c.receiver, 5s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  ASSERT_TRUE(c.receiver->reply(R"({"switched":true})", 5s).ok());
  const SourceVerdict v = c.receiver->await_verdict(200ms);
  EXPECT_FALSE(v.gave_up);
  EXPECT_TRUE(contains(v.detail, "no word from the migration source")) << v.detail;
}

TEST_P(TransportTest, AbortFromAnotherThreadWakesABlockedWrite) {
  const BigStream stream = make_big_stream();
  SenderOptions options;
  options.resend_window_bytes = 2u << 20;
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  std::jthread canceller([&] {
    std::this_thread::sleep_for(100ms);
    c.sender->abort(failed_precondition("cancelled"));
  });
  const auto start = std::chrono::steady_clock::now();
  const Status sent = send_stream(*c.sender, stream, 30s);  // the target never reads
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(sent.code(), StatusCode::kFailedPrecondition) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "transfer aborted locally: cancelled")) << sent.message();
}

TEST_P(TransportTest, BandwidthCapPacesTheTransfer) {
  const BigStream stream = make_big_stream(2, 160);  // 20 MiB of blocks
  SenderOptions options;
  options.bandwidth_cap_bytes_per_s = 50'000'000;
  Connected c = connect(options);
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(send_stream(*c.sender, stream).ok());
  ASSERT_TRUE(c.sender->flush(10s).ok());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  target.join();

  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  EXPECT_GE(c.sender->stats().bytes_written, 20'000'000u);
  EXPECT_GE(elapsed, 350ms);  // 20 MB at 50 MB/s is 0.4 s; a lower bound only
}

TEST_P(TransportTest, ChunksSplitAtEveryByteArriveIntact) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  Status sent;
  for (size_t i = 0, step = 1; i < bytes.size() && sent.ok(); i += step, step = step % 7 + 1) {
    sent = c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()) + i, std::min(step, bytes.size() - i), 5s);
  }
  ASSERT_TRUE(sent.ok()) << sent.to_string();
  ASSERT_TRUE(c.sender->flush(5s).ok());
  target.join();
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  expect_same_chunks(got.chunks, reference);
}

TEST_P(TransportTest, TimeoutsInNextFlushAndAwaitReplyBreakNothing) {
  const std::string bytes = testing::sample_stream().bytes;
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  const Status early = c.receiver->next(50ms).status();
  EXPECT_EQ(early.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(early.message(), "timed out")) << early.message();
  EXPECT_FALSE(c.sender->await_reply(50ms).ok());

  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
  const Received got = receive_all(*c.receiver, 5s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  ASSERT_TRUE(c.sender->flush(5s).ok());
  ASSERT_TRUE(c.receiver->reply("done", 5s).ok());
  auto reply = c.sender->await_reply(5s);
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, "done");
}

TEST_P(TransportTest, CallsOutOfOrderAreRefused) {
  const std::string bytes = testing::sample_stream().bytes;
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);

  EXPECT_EQ(c.receiver->reply("too early", 1s).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), 40, 1s).ok());
  EXPECT_EQ(c.sender->flush(1s).code(), StatusCode::kFailedPrecondition);  // inside chunk 0
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()) + 40, bytes.size() - 40, 5s).ok());
  const Received got = receive_all(*c.receiver, 5s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  const Status after_end = c.receiver->next(1s).status();
  EXPECT_EQ(after_end.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(after_end.message(), "is over")) << after_end.message();
  ASSERT_TRUE(c.receiver->reply("ok", 1s).ok());
  EXPECT_EQ(c.receiver->reply("again", 1s).code(), StatusCode::kFailedPrecondition);
}

TEST_P(TransportTest, BytesThatAreNotChunksAreRefusedByTheSender) {
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);
  const std::string junk(64, 'x');
  const Status st = c.sender->write(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), 1s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "not a snapshot chunk header")) << st.message();

  // A chunk out of sequence is refused too.
  const std::string bytes = testing::sample_stream().bytes;
  Connected d = connect();
  ASSERT_TRUE(d.sender && d.receiver);
  const auto reference = decode_reference(bytes);
  const size_t chunk1 = reference[1].stream_offset;
  const Status skipped =
      d.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()) + chunk1, bytes.size() - chunk1, 1s);
  EXPECT_EQ(skipped.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(skipped.message(), "sequence number 1, expected 0")) << skipped.message();
}

TEST_P(TransportTest, WholeChunkWritesThatDoNotFitAreRefusedAndBreakNothing) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  Connected c = connect();
  ASSERT_TRUE(c.sender && c.receiver);
  const std::vector<uint8_t> payload(100, 7);
  const std::span<const uint8_t> pieces[] = {payload};
  ChunkHeader h;
  h.kind = static_cast<uint16_t>(ChunkKind::kManifest);
  h.sequence = 1;  // chunk 0 is next
  h.payload_bytes = 100;
  Status st = c.sender->write_chunk(h, pieces, 1s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "chunk 1: expected chunk 0")) << st.message();
  h.sequence = 0;
  h.payload_bytes = 99;
  st = c.sender->write_chunk(h, pieces, 1s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "the header says 99 payload bytes, the pieces hold 100")) << st.message();
  // Inside a chunk written by bytes, a whole chunk cannot start.
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()), 40, 1s).ok());
  h.payload_bytes = 100;
  EXPECT_EQ(c.sender->write_chunk(h, pieces, 1s).code(), StatusCode::kFailedPrecondition);
  // None of it broke the transfer: the rest of the stream goes through.
  ASSERT_TRUE(c.sender->write(reinterpret_cast<const uint8_t*>(bytes.data()) + 40, bytes.size() - 40, 5s).ok());
  const Received got = receive_all(*c.receiver, 5s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  expect_same_chunks(got.chunks, reference);
  EXPECT_EQ(c.sender->stats().bytes_written, bytes.size());
}

INSTANTIATE_TEST_SUITE_P(Transports, TransportTest,
                         ::testing::Values(Kind::kTcp, Kind::kTls, Kind::kShm, Kind::kLoopback),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           std::string name = kind_name(info.param);
                           name[0] = static_cast<char>(std::toupper(name[0]));
                           return name;
                         });

}  // namespace
}  // namespace hotswap::migration
