// BulkLink, the ByteLink of the GPU transports, with host-memory movers in one process: one like
// cuda-ipc's (a ring written before DATA announces it) and one like nccl's (DATA first, then a
// piece that the target must receive whole). The chunk stream runs over it end to end: the whole
// stream exact, a corrupt payload resent, either peer gone; and the link itself: credits and
// deadlines, interrupt(), the target's bytes in BYTES frames, protocol errors, and the order of
// release at the end. Runs everywhere: no GPU involved.
#include "agent/migration/cuda/bulk_link.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "agent/migration/chunk_stream.h"
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

// ---- A ring in host memory, cuda-ipc's scheme. ----

struct SharedRing {
  explicit SharedRing(size_t n) : bytes(n) {}
  std::vector<uint8_t> bytes;
  std::atomic<bool> writer_closed{false};
  std::atomic<bool> reader_destroyed{false};
  std::atomic<bool> closed_before_freed{false};
};

class HostRingWriter final : public BulkWriter {
 public:
  explicit HostRingWriter(std::shared_ptr<SharedRing> ring) : ring_(std::move(ring)) {}
  uint64_t window_bytes() const override { return ring_->bytes.size(); }
  size_t max_piece_bytes(uint64_t offset) const override { return ring_->bytes.size() - offset % ring_->bytes.size(); }
  bool announce_before_write() const override { return false; }
  Status write(uint64_t offset, const void* src, size_t n, Deadline, const BulkCancel&) override {
    if (ring_->writer_closed.load()) return internal_error("write after close");
    std::memcpy(ring_->bytes.data() + offset % ring_->bytes.size(), src, n);
    return Status::ok_status();
  }
  void close() override {
    if (!ring_->reader_destroyed.load()) ring_->closed_before_freed.store(true);
    ring_->writer_closed.store(true);
  }

 private:
  std::shared_ptr<SharedRing> ring_;
};

class HostRingReader final : public BulkReader {
 public:
  explicit HostRingReader(std::shared_ptr<SharedRing> ring) : ring_(std::move(ring)) {}
  ~HostRingReader() override { ring_->reader_destroyed.store(true); }
  uint64_t window_bytes() const override { return ring_->bytes.size(); }
  StatusOr<size_t> read(uint64_t offset, uint64_t, void* dst, size_t n, Deadline, const BulkCancel&) override {
    const size_t at = offset % ring_->bytes.size();
    const size_t k = std::min(n, ring_->bytes.size() - at);
    std::memcpy(dst, ring_->bytes.data() + at, k);
    return k;
  }

 private:
  std::shared_ptr<SharedRing> ring_;
};

// ---- Whole pieces handed over in a rendezvous, nccl's scheme. ----

struct PieceChannel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<uint8_t>> pieces;
  uint64_t pushed = 0;
  uint64_t taken = 0;
};

// Waits on the channel, asking cancel every few ms. False: the deadline passed.
template <typename Pred>
StatusOr<bool> wait_on(PieceChannel& ch, std::unique_lock<std::mutex>& lock, Deadline deadline,
                       const BulkCancel& cancel, Pred ready) {
  while (!ready()) {
    lock.unlock();
    Status st = cancel();
    lock.lock();
    if (!st.ok()) return st;
    if (Clock::now() >= deadline) return false;
    ch.cv.wait_for(lock, 5ms);
  }
  return true;
}

constexpr size_t kPieceBytes = 256u << 10;

class PieceWriter final : public BulkWriter {
 public:
  explicit PieceWriter(std::shared_ptr<PieceChannel> ch) : ch_(std::move(ch)) {}
  uint64_t window_bytes() const override { return 2 * kPieceBytes; }
  size_t max_piece_bytes(uint64_t) const override { return kPieceBytes; }
  bool announce_before_write() const override { return true; }
  Status write(uint64_t, const void* src, size_t n, Deadline deadline, const BulkCancel& cancel) override {
    std::unique_lock lock(ch_->mu);
    const auto* p = static_cast<const uint8_t*>(src);
    ch_->pieces.emplace_back(p, p + n);
    const uint64_t mine = ++ch_->pushed;
    ch_->cv.notify_all();
    // Like ncclSend: done once the receiver took the piece.
    HOTSWAP_ASSIGN_OR_RETURN(bool taken, wait_on(*ch_, lock, deadline, cancel, [&] { return ch_->taken >= mine; }));
    if (!taken) return unavailable("timed out sending to test-target: the piece was not received");
    return Status::ok_status();
  }
  void close() override {}

 private:
  std::shared_ptr<PieceChannel> ch_;
};

class PieceReader final : public BulkReader {
 public:
  explicit PieceReader(std::shared_ptr<PieceChannel> ch) : ch_(std::move(ch)) {}
  uint64_t window_bytes() const override { return 2 * kPieceBytes; }
  StatusOr<size_t> read(uint64_t offset, uint64_t piece_end, void* dst, size_t n, Deadline deadline,
                        const BulkCancel& cancel) override {
    if (offset >= staged_end_) {
      std::unique_lock lock(ch_->mu);
      HOTSWAP_ASSIGN_OR_RETURN(bool ready, wait_on(*ch_, lock, deadline, cancel, [&] { return !ch_->pieces.empty(); }));
      if (!ready) return size_t{0};
      staged_ = std::move(ch_->pieces.front());
      ch_->pieces.pop_front();
      ++ch_->taken;
      ch_->cv.notify_all();
      if (staged_.size() != piece_end - offset) return internal_error("the piece's size is not the one announced");
      staged_begin_ = offset;
      staged_end_ = piece_end;
    }
    const size_t k = std::min<size_t>(n, staged_end_ - offset);
    std::memcpy(dst, staged_.data() + (offset - staged_begin_), k);
    return k;
  }

 private:
  std::shared_ptr<PieceChannel> ch_;
  std::vector<uint8_t> staged_;
  uint64_t staged_begin_ = 0;
  uint64_t staged_end_ = 0;
};

// ---- Connecting. ----

enum class Mover { kRing, kPieces };

std::string mover_name(const ::testing::TestParamInfo<Mover>& info) {
  return info.param == Mover::kRing ? "Ring" : "Pieces";
}

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

struct Links {
  std::unique_ptr<ByteLink> source;
  std::unique_ptr<ByteLink> target;
  std::shared_ptr<SharedRing> ring;
};

BulkLinkOptions fast_options() {
  BulkLinkOptions o;
  o.release_grace = 2s;
  o.peer_gone_grace = 300ms;
  return o;
}

Links make_links(Mover mover, size_t ring_bytes = 1u << 20) {
  auto [a, b] = socket_pair();
  std::unique_ptr<BulkWriter> writer;
  std::unique_ptr<BulkReader> reader;
  Links l;
  if (mover == Mover::kRing) {
    l.ring = std::make_shared<SharedRing>(ring_bytes);
    writer = std::make_unique<HostRingWriter>(l.ring);
    reader = std::make_unique<HostRingReader>(l.ring);
  } else {
    auto ch = std::make_shared<PieceChannel>();
    writer = std::make_unique<PieceWriter>(ch);
    reader = std::make_unique<PieceReader>(ch);
  }
  auto source = make_bulk_source_link(std::move(a), std::move(writer), "test-target");
  auto target = make_bulk_target_link(std::move(b), std::move(reader), "test-source", fast_options());
  EXPECT_TRUE(source.ok()) << source.status().to_string();
  EXPECT_TRUE(target.ok()) << target.status().to_string();
  if (source.ok()) l.source = std::move(source).value();
  if (target.ok()) l.target = std::move(target).value();
  return l;
}

Connected connect_stream(Mover mover, SenderOptions sender_options = {}) {
  Links l = make_links(mover);
  Connected c;
  c.sender = make_stream_sender(std::move(l.source), sender_options);
  c.receiver = make_stream_receiver(std::move(l.target), {});
  return c;
}

class BulkLinkStreamTest : public ::testing::TestWithParam<Mover> {};

TEST_P(BulkLinkStreamTest, WholeStreamArrivesExactAndTheReplyComesBack) {
  const BigStream stream = make_big_stream();
  const std::string bytes = stream.bytes();
  const auto reference = decode_reference(bytes);
  Connected c = connect_stream(GetParam());

  Received got;
  Status reply_status;
  std::jthread target([&] {
    got = receive_all(*c.receiver);
    if (got.status.ok()) reply_status = c.receiver->reply(R"({"switched":true})", 5s);
  });
  ASSERT_TRUE(send_stream(*c.sender, stream).ok());
  ASSERT_TRUE(c.sender->flush(10s).ok());
  auto reply = c.sender->await_reply(10s);
  target.join();

  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  EXPECT_TRUE(reply_status.ok()) << reply_status.to_string();
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, R"({"switched":true})");
  expect_same_chunks(got.chunks, reference);
  const SenderStats s = c.sender->stats();
  EXPECT_EQ(s.bytes_written, bytes.size());
  EXPECT_EQ(s.bytes_sent, bytes.size());
  EXPECT_EQ(s.chunks_acknowledged, reference.size());
  EXPECT_EQ(c.receiver->stats().bytes_received, bytes.size());
}

TEST_P(BulkLinkStreamTest, CorruptPayloadIsResentAndTheStreamCompletesExact) {
  const BigStream stream = make_big_stream(2, 64);
  const auto reference = decode_reference(stream.bytes());
  ASSERT_EQ(reference[4].kind, ChunkKind::kKvBlocks);
  SenderOptions options;
  options.fault.flip_byte_at = reference[4].stream_offset + kChunkHeaderBytes + 1000;
  Connected c = connect_stream(GetParam(), options);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver); });
  ASSERT_TRUE(send_stream(*c.sender, stream).ok());
  const Status flushed = c.sender->flush(10s);
  target.join();

  ASSERT_TRUE(flushed.ok()) << flushed.to_string();
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  expect_same_chunks(got.chunks, reference);
  EXPECT_EQ(c.sender->stats().resend_requests, 1u);
  EXPECT_GE(c.sender->stats().chunks_resent, 1u);
  EXPECT_EQ(c.receiver->stats().resend_requests, 1u);
}

TEST_P(BulkLinkStreamTest, SourceDroppingTheConnectionMidStreamFailsBothSides) {
  const BigStream stream = make_big_stream();
  SenderOptions options;
  options.fault.drop_after_bytes = 5'000'000;
  Connected c = connect_stream(GetParam(), options);

  Received got;
  std::jthread target([&] { got = receive_all(*c.receiver, 5s); });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(5s);
  target.join();

  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "dropped the connection")) << sent.message();
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  EXPECT_TRUE(contains(got.status.message(), "closed the connection before the stream ended")) << got.status.message();
  EXPECT_TRUE(contains(got.status.message(), "truncated in the payload")) << got.status.message();
  EXPECT_FALSE(got.chunks.empty());
}

TEST_P(BulkLinkStreamTest, TargetClosingMidStreamFailsTheSource) {
  const BigStream stream = make_big_stream();
  Connected c = connect_stream(GetParam());

  Status first;
  std::jthread target([&] {
    for (int i = 0; i < 3; ++i) {
      auto chunk = c.receiver->next(5s);
      if (!chunk.ok()) {
        first = chunk.status();
        break;
      }
    }
    c.receiver.reset();  // the target goes away with bytes unread
  });
  Status sent = send_stream(*c.sender, stream, 5s);
  if (sent.ok()) sent = c.sender->flush(5s);
  target.join();

  EXPECT_TRUE(first.ok()) << first.to_string();
  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_FALSE(contains(sent.message(), "timed out")) << sent.message();
}

INSTANTIATE_TEST_SUITE_P(Movers, BulkLinkStreamTest, ::testing::Values(Mover::kRing, Mover::kPieces), mover_name);

// ---- The link itself. ----

class BulkLinkTest : public ::testing::TestWithParam<Mover> {};

TEST_P(BulkLinkTest, SendTimesOutWhenTheTargetTakesNothing) {
  Links l = make_links(GetParam(), 64u << 10);
  std::vector<uint8_t> bytes(2u << 20, 7);
  const auto start = Clock::now();
  const Status st = l.source->send(bytes.data(), bytes.size(), deadline_after(200ms));
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_TRUE(contains(st.message(), "timed out sending to test-target")) << st.message();
}

TEST_P(BulkLinkTest, BytesGoBothWaysExactlyAcrossManyPiecesAndFrames) {
  Links l = make_links(GetParam(), 64u << 10);
  std::vector<uint8_t> forward(3u << 20), back(3u << 20);
  for (size_t i = 0; i < forward.size(); ++i) {
    forward[i] = static_cast<uint8_t>(i * 131 + 7);
    back[i] = static_cast<uint8_t>(i * 17 + 3);
  }
  std::vector<uint8_t> got_forward, got_back;
  std::jthread target([&] {
    std::vector<uint8_t> buffer(100000);
    while (got_forward.size() < forward.size()) {
      auto r = l.target->receive(buffer.data(), buffer.size(), deadline_after(5s));
      if (!r.ok() || r->eof || r->bytes == 0) break;
      got_forward.insert(got_forward.end(), buffer.begin(), buffer.begin() + r->bytes);
    }
  });
  std::jthread target_sender([&] { EXPECT_TRUE(l.target->send(back.data(), back.size(), deadline_after(5s)).ok()); });
  ASSERT_TRUE(l.source->send(forward.data(), forward.size(), deadline_after(5s)).ok());
  std::vector<uint8_t> buffer(65536);
  while (got_back.size() < back.size()) {
    auto r = l.source->receive(buffer.data(), buffer.size(), deadline_after(5s));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_FALSE(r->eof);
    ASSERT_GT(r->bytes, 0u);
    got_back.insert(got_back.end(), buffer.begin(), buffer.begin() + r->bytes);
  }
  target.join();
  target_sender.join();
  EXPECT_TRUE(got_forward == forward);
  EXPECT_TRUE(got_back == back);
}

TEST_P(BulkLinkTest, InterruptWakesABlockedSendAndABlockedReceive) {
  Links l = make_links(GetParam(), 64u << 10);
  std::vector<uint8_t> bytes(1u << 20, 1);
  Status sent;
  std::jthread blocked([&] { sent = l.source->send(bytes.data(), bytes.size(), Deadline::max()); });
  std::this_thread::sleep_for(100ms);
  l.source->interrupt();
  blocked.join();
  EXPECT_EQ(sent.code(), StatusCode::kUnavailable) << sent.to_string();
  EXPECT_TRUE(contains(sent.message(), "closed locally")) << sent.message();

  Links m = make_links(GetParam());
  StatusOr<LinkRead> read = LinkRead{};
  std::jthread reader([&] {
    uint8_t b[16];
    read = m.target->receive(b, sizeof b, Deadline::max());
  });
  std::this_thread::sleep_for(100ms);
  m.target->interrupt();
  reader.join();
  ASSERT_FALSE(read.ok());
  EXPECT_TRUE(contains(read.status().message(), "closed locally")) << read.status().message();
}

TEST_P(BulkLinkTest, ReceiveReportsTheDeadlineThenTheDataThenEof) {
  Links l = make_links(GetParam());
  uint8_t b[64];
  auto r = l.target->receive(b, sizeof b, deadline_after(50ms));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bytes, 0u);
  EXPECT_FALSE(r->eof);
  const uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
  std::jthread source([&] { EXPECT_TRUE(l.source->send(hello, sizeof hello, deadline_after(5s)).ok()); });
  r = l.target->receive(b, sizeof b, deadline_after(5s));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->bytes, 5u);
  EXPECT_EQ(std::memcmp(b, hello, 5), 0);
  source.join();
  l.source->shutdown();
  r = l.target->receive(b, sizeof b, deadline_after(5s));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->eof);
  // And the source's side: the target's EOF ends its reads, its sends fail.
  l.target->shutdown();
  auto s = l.source->receive(b, sizeof b, deadline_after(5s));
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_TRUE(s->eof);
}

TEST_P(BulkLinkTest, TargetSendFailsOnceTheSourceIsGone) {
  Links l = make_links(GetParam());
  l.source.reset();
  const uint8_t byte = 1;
  Status st;
  const Deadline deadline = deadline_after(5s);
  while (Clock::now() < deadline) {  // the EOF reaches the target's reader thread first
    st = l.target->send(&byte, 1, deadline_after(1s));
    if (!st.ok()) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
}

INSTANTIATE_TEST_SUITE_P(Movers, BulkLinkTest, ::testing::Values(Mover::kRing, Mover::kPieces), mover_name);

TEST(BulkLink, TheTargetFreesItsRingOnlyAfterTheSourceLetGo) {
  Links l = make_links(Mover::kRing);
  std::shared_ptr<SharedRing> ring = l.ring;
  const auto start = Clock::now();
  l.target.reset();  // waits for the source's EOF, which comes after its writer closed
  EXPECT_LT(Clock::now() - start, 1500ms);
  EXPECT_TRUE(ring->writer_closed.load());
  EXPECT_TRUE(ring->closed_before_freed.load());
}

TEST(BulkLink, FramesRoundTripAndBadOnesAreRefused) {
  const auto bytes = encode_bulk_frame({BulkFrameType::kCredit, 123456789});
  EXPECT_EQ(std::memcmp(bytes.data(), "HSBK", 4), 0);
  auto f = decode_bulk_frame(bytes.data());
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->type, BulkFrameType::kCredit);
  EXPECT_EQ(f->value, 123456789u);

  auto bad = bytes;
  bad[0] = 'X';
  EXPECT_TRUE(contains(decode_bulk_frame(bad.data()).status().message(), "magic"));
  bad = bytes;
  bad[4] = 9;
  EXPECT_TRUE(contains(decode_bulk_frame(bad.data()).status().message(), "unknown type 9"));
  const auto big = encode_bulk_frame({BulkFrameType::kBytes, kMaxBulkBytesFrame + 1});
  EXPECT_EQ(decode_bulk_frame(big.data()).status().code(), StatusCode::kDataLoss);
}

Status raw_send(int fd, const std::array<uint8_t, kBulkFrameBytes>& frame) {
  return send_all(fd, frame.data(), frame.size(), deadline_after(5s), -1, "test");
}

TEST(BulkLink, TargetCreditingBytesNeverAnnouncedFailsTheSource) {
  auto [a, b] = socket_pair();
  auto ring = std::make_shared<SharedRing>(64u << 10);
  auto source = make_bulk_source_link(std::move(a), std::make_unique<HostRingWriter>(ring), "test-target");
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(raw_send(b.get(), encode_bulk_frame({BulkFrameType::kCredit, 100})).ok());
  uint8_t buf[16];
  auto r = (*source)->receive(buf, sizeof buf, deadline_after(5s));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
  EXPECT_TRUE(contains(r.status().message(), "protocol error on the connection to test-target"))
      << r.status().message();
  EXPECT_TRUE(contains(r.status().message(), "CREDIT of 100 bytes with 0 bytes unacknowledged"))
      << r.status().message();
  const uint8_t byte = 0;
  EXPECT_EQ((*source)->send(&byte, 1, deadline_after(1s)).code(), StatusCode::kDataLoss);
}

TEST(BulkLink, SourceAnnouncingMoreThanTheWindowFailsTheTarget) {
  auto [a, b] = socket_pair();
  auto ring = std::make_shared<SharedRing>(64u << 10);
  auto target =
      make_bulk_target_link(std::move(b), std::make_unique<HostRingReader>(ring), "test-source", fast_options());
  ASSERT_TRUE(target.ok());
  ASSERT_TRUE(raw_send(a.get(), encode_bulk_frame({BulkFrameType::kData, 1u << 20})).ok());
  uint8_t buf[16];
  auto r = (*target)->receive(buf, sizeof buf, deadline_after(5s));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
  EXPECT_TRUE(contains(r.status().message(), "DATA of 1048576 bytes with 0 of a 65536-byte window unread"))
      << r.status().message();
  a.reset();  // the target's destructor does not wait for a peer that is gone
}

TEST(BulkLink, GarbageOnTheSocketIsAProtocolError) {
  auto [a, b] = socket_pair();
  auto ring = std::make_shared<SharedRing>(64u << 10);
  auto target =
      make_bulk_target_link(std::move(b), std::make_unique<HostRingReader>(ring), "test-source", fast_options());
  ASSERT_TRUE(target.ok());
  const std::string junk(16, 'G');
  ASSERT_TRUE(
      send_all(a.get(), reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), deadline_after(5s), -1, "t").ok());
  uint8_t buf[16];
  auto r = (*target)->receive(buf, sizeof buf, deadline_after(5s));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "without its magic")) << r.status().message();
}

TEST(BulkLink, HandshakeStatusCarriesTheCodeAndTheText) {
  auto [a, b] = socket_pair();
  constexpr char kMagic[4] = {'T', 'E', 'S', 'T'};
  ASSERT_TRUE(send_handshake_status(a.get(), kMagic, 3, resource_exhausted("no room"), deadline_after(5s), "t").ok());
  ASSERT_TRUE(send_handshake_status(a.get(), kMagic, 3, Status::ok_status(), deadline_after(5s), "t").ok());
  Status peer;
  ASSERT_TRUE(receive_handshake_status(b.get(), kMagic, 3, deadline_after(5s), "t", "a test status", &peer).ok());
  EXPECT_EQ(peer.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(peer.message(), "no room");
  ASSERT_TRUE(receive_handshake_status(b.get(), kMagic, 3, deadline_after(5s), "t", "a test status", &peer).ok());
  EXPECT_TRUE(peer.ok());
  a.reset();
  const Status closed = receive_handshake_status(b.get(), kMagic, 3, deadline_after(5s), "t", "a test status", &peer);
  EXPECT_EQ(closed.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(closed.message(), "closed the connection during a test status")) << closed.message();
}

}  // namespace
}  // namespace hotswap::migration
