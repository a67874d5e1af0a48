// A second process for the GPU transport tests. cudaIpcOpenMemHandle refuses memory exported by
// its own process, and an NCCL rank wants its own GPU, so one end of a transfer runs in a child:
// the test binary runs itself again (/proc/self/exe --hotswap-peer=ROLE ARGS...), and main()
// (gpu_test_main.cpp) runs the role instead of the tests. A role is a function registered by a
// test file with HOTSWAP_PEER_ROLE; its return value is the child's exit status.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::migration::testing {

using PeerRole = std::function<int(const std::vector<std::string>& args)>;

bool register_peer_role(const std::string& name, PeerRole role);
// For main(): runs the role named by argv[1] ("--hotswap-peer=NAME") with argv[2..]; true in
// *ran when argv asked for one.
int run_peer_role(int argc, char** argv, bool* ran);

// A child running a role. Destroying it kills the child if it still runs.
class PeerProcess {
 public:
  static StatusOr<PeerProcess> spawn(const std::string& role, const std::vector<std::string>& args);

  PeerProcess(PeerProcess&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
  PeerProcess& operator=(PeerProcess&&) = delete;
  ~PeerProcess();

  // The child's exit status, or 128 + signal when a signal ended it; -1 when it did not end
  // within timeout (then it is killed).
  int wait(std::chrono::milliseconds timeout);

 private:
  explicit PeerProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// For a role: says on stderr what failed and returns 1, the role's exit status.
int fail_child(const char* what, const Status& st);

// A socket path of its own under /tmp for one test.
std::string unique_socket_path(const std::string& tag);

}  // namespace hotswap::migration::testing

#define HOTSWAP_PEER_ROLE(name)                                                   \
  static int name##_peer_role(const std::vector<std::string>& args);              \
  [[maybe_unused]] static const bool name##_peer_role_registered =                \
      ::hotswap::migration::testing::register_peer_role(#name, name##_peer_role); \
  static int name##_peer_role(const std::vector<std::string>& args)
