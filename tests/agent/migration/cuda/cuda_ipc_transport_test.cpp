// The cuda-ipc transport. Everywhere: argument checks, the hello's wire format, and the clean
// error without a GPU. With one GPU (label gpu): a whole stream exact, a corrupt payload resent,
// and either peer dying mid-stream, with the other end in a child process (cudaIpcOpenMemHandle
// refuses memory exported by its own process).
#include "agent/migration/cuda/cuda_ipc_transport.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "agent/migration/unix_socket.h"
#include "tests/agent/migration/cuda/gpu_test_util.h"
#include "tests/agent/migration/cuda/peer_process.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::BigStream;
using testing::contains;
using testing::decode_reference;
using testing::expect_same_chunks;
using testing::fail_child;
using testing::make_big_stream;
using testing::PeerProcess;
using testing::receive_all;
using testing::Received;
using testing::send_stream;
using testing::send_stream_for_reply;
using testing::unique_socket_path;
using testing::write_stream_then_die;

constexpr char kWhyOneGpu[] = "a cuda-ipc ring in device memory";
constexpr auto kPeerTimeout = 60s;

// ---- Everywhere. ----

TEST(CudaIpcTransport, HelloRoundTripsAndBadOnesAreRefused) {
  CudaIpcHello h;
  h.device = 3;
  h.ring_bytes = 64u << 20;
  h.pci_bus_id = "0000:3b:00.0";
  for (size_t i = 0; i < h.memory_handle.size(); ++i) h.memory_handle[i] = static_cast<uint8_t>(i * 7 + 1);
  const auto bytes = encode_cuda_ipc_hello(h);
  auto back = decode_cuda_ipc_hello(bytes.data());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->device, 3);
  EXPECT_EQ(back->ring_bytes, 64u << 20);
  EXPECT_EQ(back->pci_bus_id, "0000:3b:00.0");
  EXPECT_TRUE(back->memory_handle == h.memory_handle);

  auto bad = bytes;
  bad[0] = 'X';
  EXPECT_TRUE(contains(decode_cuda_ipc_hello(bad.data()).status().message(), "not a cuda-ipc migration target"));
  bad = bytes;
  bad[4] = 2;
  const Status version = decode_cuda_ipc_hello(bad.data()).status();
  EXPECT_EQ(version.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(version.message(), "speaks version 2")) << version.message();
  CudaIpcHello tiny = h;
  tiny.ring_bytes = 100;
  EXPECT_TRUE(
      contains(decode_cuda_ipc_hello(encode_cuda_ipc_hello(tiny).data()).status().message(), "a ring of 100 bytes"));
}

TEST(CudaIpcTransport, BadArgumentsAreRefusedBeforeTheGpuIsTouched) {
  const auto relative = CudaIpcListener::listen("relative.sock");
  EXPECT_EQ(relative.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(relative.status().message(), "neither an absolute path nor an @abstract name"))
      << relative.status().message();
  CudaIpcOptions small;
  small.ring_bytes = 1000;
  const auto ring = CudaIpcListener::listen(unique_socket_path("ipc-args"), small);
  EXPECT_EQ(ring.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(ring.status().message(), "a ring of 1000 bytes")) << ring.status().message();
  CudaIpcOptions negative;
  negative.device = -1;
  EXPECT_EQ(CudaIpcListener::listen(unique_socket_path("ipc-args"), negative).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda_ipc_connect_link(std::string(200, '/'), 1s).status().code(), StatusCode::kInvalidArgument);
}

TEST(CudaIpcTransport, WithoutAGpuListenAndConnectFailNamingTheCudaError) {
  if (kernels::cuda::device_count() > 0) {
    GTEST_SKIP() << "a CUDA device is present; this checks the answer without one";
  }
  const std::string path = unique_socket_path("ipc-nogpu");
  const auto listener = CudaIpcListener::listen(path);
  ASSERT_FALSE(listener.ok());
  EXPECT_EQ(listener.status().code(), StatusCode::kUnavailable) << listener.status().to_string();
  EXPECT_TRUE(contains(listener.status().message(), "cuda-ipc target: cudaSetDevice(0): cudaError"))
      << listener.status().message();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "no socket file is left behind";
  std::printf("[ no GPU ] listen: %s\n", listener.status().to_string().c_str());

  const auto sender = cuda_ipc_connect(path, {}, 1s);
  ASSERT_FALSE(sender.ok());
  EXPECT_EQ(sender.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(sender.status().message(), "cuda-ipc source: cudaSetDevice(0): cudaError"))
      << sender.status().message();
  std::printf("[ no GPU ] connect: %s\n", sender.status().to_string().c_str());
}

// ---- The child's roles. ----

// Connects, retrying while the target is not listening yet (no socket file, or refused).
StatusOr<std::unique_ptr<ChunkSender>> connect_when_listening(const std::string& path, SenderOptions options) {
  StatusOr<std::unique_ptr<ChunkSender>> sender = unavailable("not tried");
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  do {
    sender = cuda_ipc_connect(path, options, 10s);
    if (sender.ok() || !contains(sender.status().message(), "connect to Unix socket")) return sender;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return sender;
}

// args: socket path, mode: "whole", "corrupt", "crash" (dies mid-stream), "target-dies" (expects
// the target to vanish mid-stream: exit 0 when the transfer fails as a closed peer).
HOTSWAP_PEER_ROLE(cuda_ipc_source) {
  const std::string& path = args.at(0);
  const std::string& mode = args.at(1);
  const BigStream stream = mode == "corrupt" ? make_big_stream(2, 64) : make_big_stream();
  SenderOptions options;
  if (mode == "corrupt") {
    const auto reference = decode_reference(stream.bytes());
    options.fault.flip_byte_at = reference[4].stream_offset + kChunkHeaderBytes + 1000;
  }
  auto sender = connect_when_listening(path, options);
  if (!sender.ok()) return fail_child("cuda_ipc_connect", sender.status());
  if (mode == "crash") {
    // Dies after ~3 MB, without any cleanup: the kernel closes the socket, the driver the mapping.
    return write_stream_then_die(**sender, stream, 7, 10s);
  }
  if (mode == "target-dies") {
    Status sent = send_stream(**sender, stream, 10s);
    if (sent.ok()) sent = (*sender)->flush(10s);
    if (sent.code() != StatusCode::kUnavailable || contains(sent.message(), "timed out")) {
      std::fprintf(stderr, "[ peer ] expected a closed peer, got: %s\n", sent.to_string().c_str());
      return 3;
    }
    return 0;
  }
  const Status st = send_stream_for_reply(**sender, stream);
  if (!st.ok()) return fail_child("source", st);
  const SenderStats s = (*sender)->stats();
  if (mode == "corrupt" && s.resend_requests != 1) {
    return fail_child("stats", internal_error(std::to_string(s.resend_requests) + " resend requests"));
  }
  if (mode == "whole" && s.bytes_sent != s.bytes_written) {
    return fail_child("stats", internal_error("bytes were resent"));
  }
  return 0;
}

// args: socket path. Listens, reads three chunks, dies.
HOTSWAP_PEER_ROLE(cuda_ipc_vanishing_target) {
  auto listener = CudaIpcListener::listen(args.at(0));
  if (!listener.ok()) return fail_child("listen", listener.status());
  auto receiver = listener->accept(30s);
  if (!receiver.ok()) return fail_child("accept", receiver.status());
  for (int i = 0; i < 3; ++i) {
    auto chunk = (*receiver)->next(30s);
    if (!chunk.ok()) return fail_child("next", chunk.status());
  }
  std::_Exit(9);
}

// ---- One GPU, two processes. ----

class CudaIpcGpuTest : public ::testing::Test {
 protected:
  void SetUp() override { HOTSWAP_REQUIRE_GPUS(1, kWhyOneGpu); }

  // Listens, starts the source child, accepts it.
  void start(const std::string& mode) {
    path_ = unique_socket_path("ipc");
    CudaIpcOptions options;
    options.ring_bytes = 8u << 20;  // smaller than the stream: the ring wraps
    auto listener = CudaIpcListener::listen(path_, options);
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    listener_ = std::make_unique<CudaIpcListener>(std::move(listener).value());
    auto child = PeerProcess::spawn("cuda_ipc_source", {path_, mode});
    ASSERT_TRUE(child.ok()) << child.status().to_string();
    child_ = std::make_unique<PeerProcess>(std::move(child).value());
    auto receiver = listener_->accept(30s);
    ASSERT_TRUE(receiver.ok()) << receiver.status().to_string();
    receiver_ = std::move(receiver).value();
  }

  std::string path_;
  std::unique_ptr<CudaIpcListener> listener_;
  std::unique_ptr<PeerProcess> child_;
  std::unique_ptr<ChunkReceiver> receiver_;
};

TEST_F(CudaIpcGpuTest, WholeStreamArrivesExactAndTheReplyComesBack) {
  const BigStream stream = make_big_stream();
  const auto reference = decode_reference(stream.bytes());
  ASSERT_NO_FATAL_FAILURE(start("whole"));
  const auto begin = std::chrono::steady_clock::now();
  const Received got = receive_all(*receiver_, 30s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  ASSERT_TRUE(receiver_->reply(R"({"switched":true})", 10s).ok());
  EXPECT_EQ(child_->wait(kPeerTimeout), 0) << "the source child failed (its stderr says why)";
  expect_same_chunks(got.chunks, reference);
  EXPECT_EQ(receiver_->stats().resend_requests, 0u);
  std::printf("[ transport ] cuda-ipc: %.1f MiB in %.3f s (from the first chunk wait, child start-up included)\n",
              static_cast<double>(stream.bytes().size()) / (1 << 20), seconds);
}

TEST_F(CudaIpcGpuTest, CorruptPayloadIsResentAndTheStreamCompletesExact) {
  const BigStream stream = make_big_stream(2, 64);
  const auto reference = decode_reference(stream.bytes());
  ASSERT_NO_FATAL_FAILURE(start("corrupt"));
  const Received got = receive_all(*receiver_, 30s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  ASSERT_TRUE(receiver_->reply(R"({"switched":true})", 10s).ok());
  EXPECT_EQ(child_->wait(kPeerTimeout), 0) << "the source child failed (its stderr says why)";
  expect_same_chunks(got.chunks, reference);
  EXPECT_EQ(receiver_->stats().resend_requests, 1u);
}

TEST_F(CudaIpcGpuTest, SourceDyingMidStreamFailsTheTargetAsAClosedPeer) {
  ASSERT_NO_FATAL_FAILURE(start("crash"));
  const Received got = receive_all(*receiver_, 30s);
  EXPECT_EQ(child_->wait(kPeerTimeout), 7);
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  EXPECT_FALSE(contains(got.status.message(), "timed out")) << got.status.message();
  EXPECT_FALSE(got.chunks.empty());
}

TEST_F(CudaIpcGpuTest, TargetDyingMidStreamFailsTheSource) {
  // Both ends in children: the source writes into memory whose owner dies, so its CUDA context is
  // kept out of this process.
  const std::string path = unique_socket_path("ipc-target");
  auto target = PeerProcess::spawn("cuda_ipc_vanishing_target", {path});
  ASSERT_TRUE(target.ok()) << target.status().to_string();
  auto source = PeerProcess::spawn("cuda_ipc_source", {path, "target-dies"});
  ASSERT_TRUE(source.ok()) << source.status().to_string();
  EXPECT_EQ(target->wait(kPeerTimeout), 9) << "the target child should read three chunks and die";
  EXPECT_EQ(source->wait(kPeerTimeout), 0) << "the source child should fail as a closed peer (its stderr says how)";
  remove_unix_socket_name(path);
}

}  // namespace
}  // namespace hotswap::migration
