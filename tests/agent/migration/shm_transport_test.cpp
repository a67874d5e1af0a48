// The shm transport beyond what TransportTest runs over every transport: listening, connecting
// and the handshake (and their errors), the raw link (exact bytes both ways through rings that
// wrap thousands of times, close, interrupt, deadlines), and a source process that is killed
// mid-stream. Sockets live in private directories under $TMPDIR that the tests remove.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <thread>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/shm_transport.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::contains;
using testing::decode_reference;
using testing::expect_same_chunks;
using testing::receive_all;
using testing::Received;

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

ShmSocketDir make_dir() {
  auto dir = ShmSocketDir::create("hotswap-shm-test");
  EXPECT_TRUE(dir.ok()) << dir.status().to_string();
  return std::move(dir).value();
}

struct LinkPair {
  std::unique_ptr<ByteLink> source;
  std::unique_ptr<ByteLink> target;
};

LinkPair connect_links(const ShmSocketDir& dir, size_t ring_bytes) {
  LinkPair p;
  auto listener = ShmListener::listen(dir.socket_path("link.sock"));
  EXPECT_TRUE(listener.ok()) << listener.status().to_string();
  if (!listener.ok()) return p;
  auto source = shm_connect_link(listener->path(), 5s, ring_bytes);
  EXPECT_TRUE(source.ok()) << source.status().to_string();
  auto target = listener->accept_link(5s);
  EXPECT_TRUE(target.ok()) << target.status().to_string();
  if (source.ok()) p.source = std::move(source).value();
  if (target.ok()) p.target = std::move(target).value();
  return p;
}

// Pseudo-random bytes, different per seed.
std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

// Sends all of `bytes` in pieces of 1..max_piece bytes (a different size each time).
Status send_in_pieces(ByteLink& link, const std::vector<uint8_t>& bytes, size_t max_piece, Deadline deadline) {
  size_t sent = 0, step = 1;
  while (sent < bytes.size()) {
    const size_t k = std::min(bytes.size() - sent, step);
    HOTSWAP_RETURN_IF_ERROR(link.send(bytes.data() + sent, k, deadline));
    sent += k;
    step = step * 7 % max_piece + 1;
  }
  return Status::ok_status();
}

// Receives until n bytes, EOF, an error or the deadline.
StatusOr<std::vector<uint8_t>> receive_bytes(ByteLink& link, size_t n, size_t capacity, Deadline deadline) {
  std::vector<uint8_t> out;
  std::vector<uint8_t> buffer(capacity);
  while (out.size() < n) {
    HOTSWAP_ASSIGN_OR_RETURN(LinkRead r, link.receive(buffer.data(), std::min(capacity, n - out.size()), deadline));
    if (r.eof || r.bytes == 0) break;
    out.insert(out.end(), buffer.data(), buffer.data() + r.bytes);
  }
  return out;
}

TEST(ShmTransport, AcceptTimesOutWithoutASourceAndTheListenerRemovesItsSocketFile) {
  ShmSocketDir dir = make_dir();
  const std::string path = dir.socket_path("target.sock");
  {
    auto listener = ShmListener::listen(path);
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    EXPECT_EQ(listener->endpoint(), "shm://" + path);
    EXPECT_TRUE(file_exists(path));
    const auto start = std::chrono::steady_clock::now();
    auto none = listener->accept(100ms);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
    EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
    EXPECT_TRUE(contains(none.status().message(), "timed out")) << none.status().message();
    EXPECT_TRUE(contains(none.status().message(), path)) << none.status().message();
  }
  EXPECT_FALSE(file_exists(path));
}

TEST(ShmTransport, ConnectingToAMissingSocketFailsNamingThePath) {
  ShmSocketDir dir = make_dir();
  const std::string missing = dir.socket_path("nobody.sock");
  auto sender = shm_connect(missing, {}, 1s);
  EXPECT_EQ(sender.status().code(), StatusCode::kNotFound) << sender.status().to_string();
  EXPECT_TRUE(contains(sender.status().message(), "connect to shm socket " + missing)) << sender.status().message();

  // A socket file that nobody listens on (bound, never listening): refused, also by name.
  const std::string deaf = dir.socket_path("deaf.sock");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, deaf.data(), deaf.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  auto refused = shm_connect(deaf, {}, 1s);
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().to_string();
  EXPECT_TRUE(contains(refused.status().message(), deaf)) << refused.status().message();
  EXPECT_TRUE(contains(refused.status().message(), "refused")) << refused.status().message();
  ::close(fd);
}

TEST(ShmTransport, PathsTooLongForAUnixSocketAreRefusedWithTheLimit) {
  const std::string long_path = "/tmp/" + std::string(kMaxShmSocketPathBytes, 'x') + ".sock";
  auto listener = ShmListener::listen(long_path);
  EXPECT_EQ(listener.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(listener.status().message(), "at most 107")) << listener.status().message();
  EXPECT_FALSE(file_exists(long_path));
  EXPECT_EQ(shm_connect(long_path, {}, 1s).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_shm_endpoint("shm://" + long_path).status().code(), StatusCode::kInvalidArgument);

  auto parsed = parse_shm_endpoint("shm:///tmp/a/b.sock");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, "/tmp/a/b.sock");
  EXPECT_EQ(parse_shm_endpoint("shm://relative.sock").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_shm_endpoint("tcp://h:1").status().code(), StatusCode::kInvalidArgument);
}

TEST(ShmTransport, ListeningWhereAFileIsAlreadyThereFailsAndLeavesTheFile) {
  ShmSocketDir dir = make_dir();
  const std::string path = dir.socket_path("taken.sock");
  auto first = ShmListener::listen(path);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto second = ShmListener::listen(path);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(second.status().message(), "already there")) << second.status().message();
  EXPECT_TRUE(file_exists(path));  // the first listener's, untouched
  EXPECT_EQ(ShmListener::listen(dir.socket_path("no/such/dir.sock")).status().code(), StatusCode::kNotFound);
}

TEST(ShmTransport, SocketDirIsPrivateAndRemovedWithTheSocketsLeftInIt) {
  std::string path;
  std::optional<ShmListener> outlives;  // declared first: destroyed after the directory
  {
    ShmSocketDir dir = make_dir();
    path = dir.path();
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    auto listener = ShmListener::listen(dir.socket_path("left.sock"));
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    outlives.emplace(std::move(listener).value());
    ShmSocketDir moved = std::move(dir);
    EXPECT_EQ(moved.path(), path);
  }
  EXPECT_FALSE(file_exists(path));
}

TEST(ShmTransport, HandshakeFromAPeerThatIsNotAShmSourceIsRefused) {
  ShmSocketDir dir = make_dir();
  auto listener = ShmListener::listen(dir.socket_path("t.sock"));
  ASSERT_TRUE(listener.ok());
  struct Case {
    std::string name;
    std::string hello;
    std::string expected;
  };
  std::string no_fd(16, '\0');
  std::memcpy(no_fd.data(), "HSSM\x01\x00", 6);
  no_fd[9] = 0x10;  // ring_bytes 4096, no descriptor attached
  const std::vector<Case> cases = {
      {"garbage", std::string(16, 'G'), "does not start with \"HSSM\""},
      {"no shared memory", no_fd, "0 descriptors"},
      {"half a handshake, then gone", "HSSM", "closed the connection after 4 bytes"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, listener->path().data(), listener->path().size());
    ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::send(fd, k.hello.data(), k.hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(k.hello.size()));
    ::shutdown(fd, SHUT_WR);
    auto receiver = listener->accept(2s);
    EXPECT_FALSE(receiver.ok());
    EXPECT_TRUE(contains(receiver.status().message(), k.expected)) << receiver.status().message();
    ::close(fd);
  }
}

TEST(ShmTransport, BytesArriveExactBothWaysAtOnceThroughRingsThatWrap) {
  ShmSocketDir dir = make_dir();
  LinkPair p = connect_links(dir, kMinShmRingBytes);  // 4 KiB rings: thousands of wraps and waits
  ASSERT_TRUE(p.source && p.target);
  const std::vector<uint8_t> forward = pattern(24u << 20, 1);
  const std::vector<uint8_t> back = pattern(6u << 20, 2);
  const Deadline deadline = deadline_after(60s);

  StatusOr<std::vector<uint8_t>> got_forward = std::vector<uint8_t>();
  StatusOr<std::vector<uint8_t>> got_back = std::vector<uint8_t>();
  Status sent_back;
  std::jthread target_reader([&] { got_forward = receive_bytes(*p.target, forward.size(), 5000, deadline); });
  std::jthread target_writer([&] { sent_back = send_in_pieces(*p.target, back, 3000, deadline); });
  std::jthread source_reader([&] { got_back = receive_bytes(*p.source, back.size(), 777, deadline); });
  const Status sent_forward = send_in_pieces(*p.source, forward, 9000, deadline);
  target_reader.join();
  target_writer.join();
  source_reader.join();

  ASSERT_TRUE(sent_forward.ok()) << sent_forward.to_string();
  ASSERT_TRUE(sent_back.ok()) << sent_back.to_string();
  ASSERT_TRUE(got_forward.ok()) << got_forward.status().to_string();
  ASSERT_TRUE(got_back.ok()) << got_back.status().to_string();
  EXPECT_TRUE(*got_forward == forward) << "forward: " << got_forward->size() << " of " << forward.size() << " bytes";
  EXPECT_TRUE(*got_back == back) << "back: " << got_back->size() << " of " << back.size() << " bytes";
}

TEST(ShmTransport, LargeSnapshotStreamArrivesExactThroughSmallRings) {
  const testing::BigStream stream = testing::make_big_stream(4, 256);  // 64 MiB of blocks
  const std::string bytes = stream.bytes();
  const auto reference = decode_reference(bytes);
  ShmSocketDir dir = make_dir();
  auto listener = ShmListener::listen(dir.socket_path("big.sock"));
  ASSERT_TRUE(listener.ok());
  auto sender = shm_connect(listener->path(), {}, 5s, 64u << 10);
  ASSERT_TRUE(sender.ok()) << sender.status().to_string();
  auto receiver = listener->accept(5s);
  ASSERT_TRUE(receiver.ok()) << receiver.status().to_string();

  Received got;
  Status replied;
  std::jthread target([&] {
    got = receive_all(**receiver);
    if (got.status.ok()) replied = (*receiver)->reply("done", 5s);
  });
  ASSERT_TRUE(testing::send_stream(**sender, stream).ok());
  ASSERT_TRUE((*sender)->flush(20s).ok());
  auto reply = (*sender)->await_reply(10s);
  target.join();

  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  expect_same_chunks(got.chunks, reference);
  EXPECT_TRUE(replied.ok()) << replied.to_string();
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, "done");
  EXPECT_EQ((*sender)->stats().bytes_acknowledged, bytes.size());
  EXPECT_EQ((*sender)->stats().chunks_resent, 0u);
}

TEST(ShmTransport, PeerShutdownDeliversWhatWasSentThenEndsAndRefusesSends) {
  ShmSocketDir dir = make_dir();
  LinkPair p = connect_links(dir, kShmRingBytes);
  ASSERT_TRUE(p.source && p.target);
  const std::vector<uint8_t> bytes = pattern(100000, 3);
  ASSERT_TRUE(p.source->send(bytes.data(), bytes.size(), deadline_after(5s)).ok());
  p.source->shutdown();

  auto got = receive_bytes(*p.target, bytes.size() + 1, 4096, deadline_after(5s));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(*got == bytes);
  uint8_t one = 0;
  auto end = p.target->receive(&one, 1, deadline_after(1s));
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end->eof);
  const Status refused = p.target->send(&one, 1, deadline_after(1s));
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(refused.message(), "peer closed the connection")) << refused.message();
  EXPECT_FALSE(contains(refused.message(), "timed out")) << refused.message();
  // The side that shut down says so.
  EXPECT_TRUE(contains(p.source->send(&one, 1, deadline_after(1s)).message(), "closed locally"));
}

TEST(ShmTransport, InterruptWakesABlockedReceiveAndABlockedSend) {
  ShmSocketDir dir = make_dir();
  LinkPair p = connect_links(dir, kMinShmRingBytes);
  ASSERT_TRUE(p.source && p.target);
  // Both threads of one end wait: its receive for bytes that never come, its send on a ring of
  // 4 KiB that the target never reads. One interrupt() wakes both.
  const std::vector<uint8_t> bytes = pattern(64u << 10, 4);
  Status receive_status, send_status;
  const auto start = std::chrono::steady_clock::now();
  std::jthread receiver([&] {
    uint8_t buffer[64];
    receive_status = p.source->receive(buffer, sizeof buffer, Deadline::max()).status();
  });
  std::jthread sender([&] { send_status = p.source->send(bytes.data(), bytes.size(), Deadline::max()); });
  std::this_thread::sleep_for(100ms);
  p.source->interrupt();
  receiver.join();
  sender.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(contains(receive_status.message(), "closed locally")) << receive_status.to_string();
  EXPECT_TRUE(contains(send_status.message(), "closed locally")) << send_status.to_string();
}

TEST(ShmTransport, ReceiveAndSendKeepTheirDeadlines) {
  ShmSocketDir dir = make_dir();
  LinkPair p = connect_links(dir, kMinShmRingBytes);
  ASSERT_TRUE(p.source && p.target);
  uint8_t buffer[64];
  auto start = std::chrono::steady_clock::now();
  auto none = p.target->receive(buffer, sizeof buffer, deadline_after(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  ASSERT_TRUE(none.ok()) << none.status().to_string();
  EXPECT_EQ(none->bytes, 0u);
  EXPECT_FALSE(none->eof);

  const std::vector<uint8_t> bytes = pattern(64u << 10, 5);
  start = std::chrono::steady_clock::now();
  const Status full = p.source->send(bytes.data(), bytes.size(), deadline_after(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(full.message(), "timed out")) << full.message();
  // Nothing broke: the target reads what fit, in order.
  auto got = receive_bytes(*p.target, kMinShmRingBytes, 1024, deadline_after(1s));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(std::equal(got->begin(), got->end(), bytes.begin()));
  EXPECT_EQ(got->size(), kMinShmRingBytes);
}

TEST(ShmTransport, SourceProcessKilledMidStreamFailsTheTargetSayingWhere) {
  const std::string bytes = testing::sample_stream().bytes;
  const auto reference = decode_reference(bytes);
  const size_t cut = reference[4].stream_offset + kChunkHeaderBytes + 50;
  ShmSocketDir dir = make_dir();
  auto listener = ShmListener::listen(dir.socket_path("dies.sock"));
  ASSERT_TRUE(listener.ok());
  const std::string path = listener->path();

  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {  // the source process: sends part of a chunk and is killed, closing nothing itself
    ::alarm(10);
    auto link = shm_connect_link(path, 5s);
    if (!link.ok()) ::_exit(2);
    if (!(*link)->send(reinterpret_cast<const uint8_t*>(bytes.data()), cut, deadline_after(5s)).ok()) ::_exit(3);
    ::raise(SIGKILL);
    ::_exit(4);
  }
  auto receiver = listener->accept(5s);
  Received got;
  if (receiver.ok()) got = receive_all(**receiver, 5s);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(receiver.ok()) << receiver.status().to_string();
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "child exit status " << wstatus;
  EXPECT_EQ(got.chunks.size(), 4u);
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  EXPECT_TRUE(contains(got.status.message(), "closed the connection before the stream ended: snapshot chunk 4"))
      << got.status.message();
  EXPECT_TRUE(contains(got.status.message(), "truncated in the payload, 50 of")) << got.status.message();
}

TEST(ShmTransport, NodeIdNamesThisMachineTheSameWayEveryTime) {
  const std::string id = local_node_id();
  ASSERT_FALSE(id.empty());  // Linux has a boot id
  EXPECT_EQ(id, local_node_id());
  EXPECT_NE(id.find('/'), std::string::npos);
}

}  // namespace
}  // namespace hotswap::migration
