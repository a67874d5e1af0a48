// The nccl transport. Everywhere: argument checks, the hello's wire format, and the clean error
// without a GPU (or kUnimplemented in a build without NCCL). With two GPUs (label gpu): a whole
// stream exact, a corrupt payload resent, and a source dying mid-stream, with the source in a
// child process on GPU 1 and the target here on GPU 0. NCCL refuses two ranks of one communicator
// on one device, so on a machine with one GPU these skip, saying so.
#include "agent/migration/cuda/nccl_transport.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "agent/migration/cuda/gpu_endpoint.h"
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
using testing::send_stream_for_reply;
using testing::write_stream_then_die;

constexpr char kWhyTwoGpus[] =
    "one per NCCL rank: NCCL refuses two ranks of a communicator on the same GPU, so a 1-GPU machine cannot run it";
constexpr auto kPeerTimeout = 90s;

// ---- Everywhere. ----

TEST(NcclTransport, HelloRoundTripsAndBadOnesAreRefused) {
  NcclHello h;
  h.piece_bytes = 8u << 20;
  h.window_bytes = 16u << 20;
  for (size_t i = 0; i < h.unique_id.size(); ++i) h.unique_id[i] = static_cast<uint8_t>(255 - i);
  const auto bytes = encode_nccl_hello(h);
  auto back = decode_nccl_hello(bytes.data());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->piece_bytes, 8u << 20);
  EXPECT_EQ(back->window_bytes, 16u << 20);
  EXPECT_TRUE(back->unique_id == h.unique_id);

  auto bad = bytes;
  bad[1] = 'x';
  EXPECT_TRUE(contains(decode_nccl_hello(bad.data()).status().message(), "not an nccl migration target"));
  NcclHello small_window = h;
  small_window.window_bytes = h.piece_bytes - 1;
  EXPECT_TRUE(contains(decode_nccl_hello(encode_nccl_hello(small_window).data()).status().message(), "a window of"));
  NcclHello huge = h;
  huge.piece_bytes = 4ull << 30;
  EXPECT_EQ(decode_nccl_hello(encode_nccl_hello(huge).data()).status().code(), StatusCode::kDataLoss);
}

TEST(NcclTransport, WithoutAGpuListenAndConnectFailCleanly) {
  if (kernels::cuda::device_count() > 0) {
    GTEST_SKIP() << "a CUDA device is present; this checks the answer without one";
  }
  const auto listener = NcclListener::listen("127.0.0.1", 0);
  const auto sender = nccl_connect("127.0.0.1", 1, {}, 1s);
  ASSERT_FALSE(listener.ok());
  ASSERT_FALSE(sender.ok());
  if (!nccl_transport_available()) {
    EXPECT_EQ(listener.status().code(), StatusCode::kUnimplemented);
    EXPECT_TRUE(contains(listener.status().message(), "not in this build")) << listener.status().message();
    return;
  }
  EXPECT_EQ(listener.status().code(), StatusCode::kUnavailable) << listener.status().to_string();
  EXPECT_TRUE(contains(listener.status().message(), "nccl target: cudaSetDevice(0): cudaError"))
      << listener.status().message();
  EXPECT_EQ(sender.status().code(), StatusCode::kUnavailable) << sender.status().to_string();
  EXPECT_TRUE(contains(sender.status().message(), "nccl source: cudaSetDevice(0): cudaError"))
      << sender.status().message();
}

TEST(NcclTransport, BadOptionsAreRefusedBeforeTheGpuIsTouched) {
  if (!nccl_transport_available()) GTEST_SKIP() << "this build has no NCCL (CMake found none)";
  NcclOptions tiny;
  tiny.piece_bytes = 1000;
  const auto listener = NcclListener::listen("127.0.0.1", 0, tiny);
  EXPECT_EQ(listener.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(listener.status().message(), "pieces of 1000 bytes")) << listener.status().message();
  NcclOptions negative;
  negative.device = -2;
  EXPECT_EQ(nccl_connect_link("127.0.0.1", 1, 1s, negative).status().code(), StatusCode::kInvalidArgument);
}

// ---- The child's role. ----

// args: endpoint ("nccl://127.0.0.1:PORT"), mode ("whole", "corrupt", "crash"). Runs on GPU 1.
HOTSWAP_PEER_ROLE(nccl_source) {
  auto ep = parse_nccl_endpoint(args.at(0));
  if (!ep.ok()) return fail_child("endpoint", ep.status());
  const std::string& mode = args.at(1);
  const BigStream stream = mode == "corrupt" ? make_big_stream(2, 64) : make_big_stream();
  SenderOptions options;
  if (mode == "corrupt") {
    const auto reference = decode_reference(stream.bytes());
    options.fault.flip_byte_at = reference[4].stream_offset + kChunkHeaderBytes + 1000;
  }
  NcclOptions gpu;
  gpu.device = 1;
  auto sender = nccl_connect(ep->host, ep->port, options, 60s, gpu);
  if (!sender.ok()) return fail_child("nccl_connect", sender.status());
  if (mode == "crash") return write_stream_then_die(**sender, stream, 7, 20s);
  const Status st = send_stream_for_reply(**sender, stream, 20s);
  if (!st.ok()) return fail_child("source", st);
  if (mode == "corrupt" && (*sender)->stats().resend_requests != 1) {
    return fail_child("stats", internal_error("expected one resend request"));
  }
  return 0;
}

// ---- Two GPUs, two processes. ----

class NcclGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!nccl_transport_available()) {
      testing::announce_skip("this build has no NCCL (CMake found none), so the nccl transport is not here");
      GTEST_SKIP() << "this build has no NCCL";
    }
    HOTSWAP_REQUIRE_GPUS(2, kWhyTwoGpus);
  }

  void start(const std::string& mode) {
    auto listener = NcclListener::listen("127.0.0.1", 0);
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    auto child = PeerProcess::spawn("nccl_source", {nccl_endpoint("127.0.0.1", listener->port()), mode});
    ASSERT_TRUE(child.ok()) << child.status().to_string();
    child_ = std::make_unique<PeerProcess>(std::move(child).value());
    auto receiver = listener->accept(60s);
    ASSERT_TRUE(receiver.ok()) << receiver.status().to_string();
    receiver_ = std::move(receiver).value();
  }

  std::unique_ptr<PeerProcess> child_;
  std::unique_ptr<ChunkReceiver> receiver_;
};

TEST_F(NcclGpuTest, WholeStreamArrivesExactAndTheReplyComesBack) {
  const BigStream stream = make_big_stream();
  const auto reference = decode_reference(stream.bytes());
  ASSERT_NO_FATAL_FAILURE(start("whole"));
  const Received got = receive_all(*receiver_, 30s);
  ASSERT_TRUE(got.status.ok()) << got.status.to_string();
  ASSERT_TRUE(receiver_->reply(R"({"switched":true})", 10s).ok());
  EXPECT_EQ(child_->wait(kPeerTimeout), 0) << "the source child failed (its stderr says why)";
  expect_same_chunks(got.chunks, reference);
}

TEST_F(NcclGpuTest, CorruptPayloadIsResentAndTheStreamCompletesExact) {
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

TEST_F(NcclGpuTest, SourceDyingMidStreamFailsTheTarget) {
  ASSERT_NO_FATAL_FAILURE(start("crash"));
  const Received got = receive_all(*receiver_, 30s);
  EXPECT_EQ(child_->wait(kPeerTimeout), 7);
  EXPECT_EQ(got.status.code(), StatusCode::kUnavailable) << got.status.to_string();
  EXPECT_FALSE(got.chunks.empty());
}

}  // namespace
}  // namespace hotswap::migration
