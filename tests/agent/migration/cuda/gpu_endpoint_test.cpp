// The GPU transports' endpoints and Unix socket names: what parses, what is refused and why.
// Runs everywhere.
#include "agent/migration/cuda/gpu_endpoint.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/migration/unix_socket.h"
#include "tests/agent/migration/cuda/peer_process.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::contains;

TEST(GpuEndpoint, CudaIpcEndpointsNameAPathOrAnAbstractSocket) {
  auto path = parse_cuda_ipc_endpoint("cuda-ipc:///run/hotswap/migration-1.sock");
  ASSERT_TRUE(path.ok()) << path.status().to_string();
  EXPECT_EQ(*path, "/run/hotswap/migration-1.sock");
  auto abstract = parse_cuda_ipc_endpoint("cuda-ipc://@hotswap-m1");
  ASSERT_TRUE(abstract.ok()) << abstract.status().to_string();
  EXPECT_EQ(*abstract, "@hotswap-m1");
  EXPECT_EQ(cuda_ipc_endpoint("/run/x.sock"), "cuda-ipc:///run/x.sock");
  EXPECT_EQ(*parse_cuda_ipc_endpoint(cuda_ipc_endpoint("/a/b")), "/a/b");
}

TEST(GpuEndpoint, BadCudaIpcEndpointsSayWhatIsWrong) {
  struct Case {
    std::string endpoint;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"tcp://10.0.0.1:5000", "is not cuda-ipc:///socket/path"},
      {"cuda-ipc://", "empty Unix socket name"},
      {"cuda-ipc://relative/x.sock", "neither an absolute path nor an @abstract name"},
      {"cuda-ipc://@", "needs a name after the '@'"},
      {"cuda-ipc:///run/dir/", "names a directory"},
      {"cuda-ipc:///" + std::string(200, 'x'), "over the limit of 107"},
      {std::string("cuda-ipc:///a\0b", 15), "contains a NUL byte"},
  };
  for (const Case& c : cases) {
    auto r = parse_cuda_ipc_endpoint(c.endpoint);
    ASSERT_FALSE(r.ok()) << c.endpoint;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), c.expected)) << c.endpoint << ": " << r.status().message();
  }
}

TEST(GpuEndpoint, NcclEndpointsNameHostAndPort) {
  auto ep = parse_nccl_endpoint("nccl://10.0.3.7:41234");
  ASSERT_TRUE(ep.ok()) << ep.status().to_string();
  EXPECT_EQ(ep->host, "10.0.3.7");
  EXPECT_EQ(ep->port, 41234);
  auto named = parse_nccl_endpoint("nccl://gpu-node-3.cluster.local:1");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->host, "gpu-node-3.cluster.local");
  EXPECT_EQ(nccl_endpoint("10.0.0.1", 80), "nccl://10.0.0.1:80");
}

TEST(GpuEndpoint, BadNcclEndpointsSayWhatIsWrong) {
  struct Case {
    std::string endpoint;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"tcp://10.0.0.1:5000", "is not nccl://host:port"},
      {"nccl://10.0.0.1", "has no port"},
      {"nccl://:5000", "has no host"},
      {"nccl://10.0.0.1:0", "out of range"},
      {"nccl://10.0.0.1:65536", "out of range"},
      {"nccl://10.0.0.1:12ab", "bad port"},
      {"nccl://10.0.0.1:", "bad port"},
      {"nccl://host/path:80", "bad host"},
  };
  for (const Case& c : cases) {
    auto r = parse_nccl_endpoint(c.endpoint);
    ASSERT_FALSE(r.ok()) << c.endpoint;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), c.expected)) << c.endpoint << ": " << r.status().message();
  }
}

TEST(UnixSocket, ListenAcceptConnectAndAStaleSocketFileIsReplaced) {
  const std::string path = testing::unique_socket_path("unix");
  {
    auto listener = listen_unix_socket(path);
    ASSERT_TRUE(listener.ok()) << listener.status().to_string();
    auto none = accept_unix_socket(listener->get(), deadline_after(50ms), path);
    EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
    EXPECT_TRUE(contains(none.status().message(), "timed out")) << none.status().message();
    auto client = connect_unix_socket(path, deadline_after(1s));
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    auto server = accept_unix_socket(listener->get(), deadline_after(1s), path);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    // A second listener on a live socket is refused.
    EXPECT_EQ(listen_unix_socket(path).status().code(), StatusCode::kUnavailable);
  }
  // The listener closed without removing its file, as a process that died would.
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  auto again = listen_unix_socket(path);
  EXPECT_TRUE(again.ok()) << again.status().to_string();
  remove_unix_socket_name(path);
  auto nobody = connect_unix_socket(path, deadline_after(1s));
  EXPECT_EQ(nobody.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(nobody.status().message(), "connect to Unix socket " + path)) << nobody.status().message();
}

TEST(UnixSocket, AbstractNamesWork) {
  const std::string name = "@hotswap-test-" + std::to_string(::getpid());
  auto listener = listen_unix_socket(name);
  ASSERT_TRUE(listener.ok()) << listener.status().to_string();
  auto client = connect_unix_socket(name, deadline_after(1s));
  EXPECT_TRUE(client.ok()) << client.status().to_string();
}

}  // namespace
}  // namespace hotswap::migration
