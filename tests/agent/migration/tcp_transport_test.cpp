// The tcp transport against raw sockets: connecting and accepting, the exact bytes on the wire in
// both directions (chunks, ACK, RESEND, REPLY), and peers that break the protocol or vanish.
#include <gtest/gtest.h>

#include <thread>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/link_probe.h"
#include "agent/migration/tcp_transport.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::contains;
using testing::decode_reference;
using testing::receive_all;
using testing::Received;

// Reads exactly n bytes from a raw socket, or fewer when the peer closes or 5 s pass.
std::string read_exactly(int fd, size_t n) {
  std::string out;
  std::vector<uint8_t> buffer(64 << 10);
  const Deadline deadline = deadline_after(5s);
  while (out.size() < n) {
    auto r = receive_some(fd, buffer.data(), std::min(buffer.size(), n - out.size()), deadline, -1, "test");
    if (!r.ok() || r->eof || r->bytes == 0) break;
    out.append(reinterpret_cast<const char*>(buffer.data()), r->bytes);
  }
  return out;
}

Status send_control(int fd, ControlType type, uint64_t value, const std::string& text = "") {
  const auto header = encode_control_header({type, 0, value});
  std::string message(reinterpret_cast<const char*>(header.data()), header.size());
  message += text;
  return send_all(fd, reinterpret_cast<const uint8_t*>(message.data()), message.size(), deadline_after(5s), -1, "test");
}

TEST(TcpTransport, ListenPicksAFreePortAndAcceptTimesOutWithoutASource) {
  auto a = TcpListener::listen("127.0.0.1", 0);
  auto b = TcpListener::listen("127.0.0.1", 0);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_NE(a->port(), 0);
  EXPECT_NE(a->port(), b->port());
  const auto start = std::chrono::steady_clock::now();
  auto none = a->accept(100ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(none.status().message(), "timed out")) << none.status().message();
}

TEST(TcpTransport, ConnectingWhereNobodyListensFails) {
  uint16_t port = 0;
  {
    auto listener = TcpListener::listen("127.0.0.1", 0);
    ASSERT_TRUE(listener.ok());
    port = listener->port();
  }
  auto sender = tcp_connect("127.0.0.1", port, {}, 2s);
  EXPECT_EQ(sender.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(sender.status().message(), "connect to 127.0.0.1:" + std::to_string(port)))
      << sender.status().message();
  EXPECT_EQ(tcp_connect("no-such-host.invalid", 1, {}, 2s).status().code(), StatusCode::kNotFound);
}

TEST(TcpTransport, WireCarriesTheChunksAndTheControlMessagesAsDocumented) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  const size_t chunk2 = reference[2].stream_offset;
  auto listen_fd = listen_tcp_socket("127.0.0.1", 0);
  ASSERT_TRUE(listen_fd.ok());
  auto port = tcp_local_port(listen_fd->get());
  ASSERT_TRUE(port.ok());
  auto sender = tcp_connect("127.0.0.1", *port, {}, 5s);
  ASSERT_TRUE(sender.ok()) << sender.status().to_string();
  auto raw = accept_tcp_socket(listen_fd->get(), deadline_after(5s), nullptr);
  ASSERT_TRUE(raw.ok()) << raw.status().to_string();
  const int fd = raw->get();

  std::string first_pass, second_pass;
  std::jthread target([&] {
    first_pass = read_exactly(fd, bytes.size());
    // Chunks 0 and 1 came whole; chunk 2 arrived corrupt: go back to it.
    EXPECT_TRUE(send_control(fd, ControlType::kAck, 2).ok());
    EXPECT_TRUE(send_control(fd, ControlType::kResend, 2).ok());
    second_pass = read_exactly(fd, bytes.size() - chunk2);
    EXPECT_TRUE(send_control(fd, ControlType::kAck, reference.size()).ok());
    EXPECT_TRUE(send_control(fd, ControlType::kReply, 17, R"({"switched":true})").ok());
  });
  ASSERT_TRUE((*sender)->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
  const Status flushed = (*sender)->flush(5s);
  auto reply = (*sender)->await_reply(5s);
  target.join();

  ASSERT_TRUE(flushed.ok()) << flushed.to_string();
  EXPECT_TRUE(first_pass == bytes);
  EXPECT_TRUE(second_pass == bytes.substr(chunk2));
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, R"({"switched":true})");
  const SenderStats s = (*sender)->stats();
  EXPECT_EQ(s.resend_requests, 1u);
  EXPECT_EQ(s.chunks_resent, reference.size() - 2);
  EXPECT_EQ(s.bytes_resent, bytes.size() - chunk2);
  EXPECT_EQ(s.chunks_acknowledged, reference.size());
}

TEST(TcpTransport, TargetBreakingTheProtocolFailsTheSource) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  struct Case {
    std::string name;
    std::string message;  // what the target sends
    std::string expected;
  };
  const auto header = [](ControlType type, uint64_t value) {
    const auto h = encode_control_header({type, 0, value});
    return std::string(reinterpret_cast<const char*>(h.data()), h.size());
  };
  const std::vector<Case> cases = {
      {"garbage", std::string(16, 'G'), "without its magic"},
      {"ack beyond what was written", header(ControlType::kAck, reference.size() + 5), "ACK of"},
      {"resend of a chunk never written", header(ControlType::kResend, reference.size()), "RESEND from chunk"},
      {"reply over the limit", header(ControlType::kReply, kMaxReplyBytes + 1), "over the limit"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    auto listen_fd = listen_tcp_socket("127.0.0.1", 0);
    ASSERT_TRUE(listen_fd.ok());
    auto port = tcp_local_port(listen_fd->get());
    ASSERT_TRUE(port.ok());
    auto sender = tcp_connect("127.0.0.1", *port, {}, 5s);
    ASSERT_TRUE(sender.ok());
    auto raw = accept_tcp_socket(listen_fd->get(), deadline_after(5s), nullptr);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE((*sender)->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
    EXPECT_EQ(read_exactly(raw->get(), bytes.size()).size(), bytes.size());
    ASSERT_TRUE(send_all(raw->get(), reinterpret_cast<const uint8_t*>(k.message.data()), k.message.size(),
                         deadline_after(5s), -1, "test")
                    .ok());
    const Status st = (*sender)->flush(5s);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.to_string();
    EXPECT_TRUE(contains(st.message(), "protocol error from the migration target")) << st.message();
    EXPECT_TRUE(contains(st.message(), k.expected)) << st.message();
  }
}

TEST(TcpTransport, RawSourceClosingMidChunkFailsTheReceiverSayingWhere) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  auto listener = TcpListener::listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  auto raw = connect_tcp_socket("127.0.0.1", listener->port(), deadline_after(5s));
  ASSERT_TRUE(raw.ok());
  auto receiver = listener->accept(5s);
  ASSERT_TRUE(receiver.ok());

  const size_t cut = reference[4].stream_offset + kChunkHeaderBytes + 50;
  ASSERT_TRUE(
      send_all(raw->get(), reinterpret_cast<const uint8_t*>(bytes.data()), cut, deadline_after(5s), -1, "test").ok());
  raw->reset();  // the source process dies
  const Received got = receive_all(**receiver, 5s);
  EXPECT_EQ(got.chunks.size(), 4u);
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  EXPECT_TRUE(contains(got.status.message(),
                       "closed the connection before the stream ended: snapshot chunk 4 "
                       "(KvBlocks) at byte " +
                           std::to_string(reference[4].stream_offset) + ": truncated in the payload, 50 of"))
      << got.status.message();
}

TEST(TcpTransport, ReceiverAcknowledgesBeforeItWaitsAndAtEnd) {
  // A sender with a window smaller than one acknowledgement interval still finishes: the receiver
  // acknowledges whenever it is about to wait for more bytes.
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  auto listener = TcpListener::listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  SenderOptions options;
  options.resend_window_bytes = 1;
  auto sender = tcp_connect("127.0.0.1", listener->port(), options, 5s);
  ASSERT_TRUE(sender.ok());
  auto receiver = listener->accept(5s);
  ASSERT_TRUE(receiver.ok());

  Received got;
  std::jthread target([&] { got = receive_all(**receiver, 5s); });
  ASSERT_TRUE((*sender)->write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 5s).ok());
  ASSERT_TRUE((*sender)->flush(5s).ok());
  target.join();
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  EXPECT_EQ(got.chunks.size(), reference.size());
  EXPECT_GE((*receiver)->stats().acks_sent, reference.size() - 1);
}

TEST(LinkProbe, MeasuresRawLoopbackThroughput) {
  auto bytes_per_s = measure_tcp_loopback_bytes_per_s(256u << 20);
  ASSERT_TRUE(bytes_per_s.ok()) << bytes_per_s.status().to_string();
  EXPECT_GT(*bytes_per_s, 0.0);
  std::printf("[ link probe ] raw TCP over 127.0.0.1, 256 MiB: %.0f MB/s\n", *bytes_per_s / 1e6);
  EXPECT_EQ(measure_tcp_loopback_bytes_per_s(0).status().code(), StatusCode::kInvalidArgument);
  LinkProbeOptions copy_and_crc;
  copy_and_crc.copy_and_checksum = true;
  // An odd size: the last block is short.
  auto floor = measure_tcp_loopback_bytes_per_s((64u << 20) + 12345, copy_and_crc);
  ASSERT_TRUE(floor.ok()) << floor.status().to_string();
  EXPECT_GT(*floor, 0.0);
}

}  // namespace
}  // namespace hotswap::migration
