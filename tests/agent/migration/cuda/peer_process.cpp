#include "tests/agent/migration/cuda/peer_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

extern char** environ;

namespace hotswap::migration::testing {
namespace {

constexpr char kPeerFlag[] = "--hotswap-peer=";

std::map<std::string, PeerRole>& roles() {
  static std::map<std::string, PeerRole> r;
  return r;
}

}  // namespace

bool register_peer_role(const std::string& name, PeerRole role) {
  roles()[name] = std::move(role);
  return true;
}

int run_peer_role(int argc, char** argv, bool* ran) {
  *ran = false;
  if (argc < 2 || std::strncmp(argv[1], kPeerFlag, std::strlen(kPeerFlag)) != 0) return 0;
  *ran = true;
  const std::string name = argv[1] + std::strlen(kPeerFlag);
  auto it = roles().find(name);
  if (it == roles().end()) {
    std::fprintf(stderr, "[ peer ] no role named '%s'\n", name.c_str());
    return 100;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  return it->second(args);
}

StatusOr<PeerProcess> PeerProcess::spawn(const std::string& role, const std::vector<std::string>& args) {
  std::vector<std::string> words = {"/proc/self/exe", kPeerFlag + role};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return unavailable("posix_spawn of the peer role '" + role + "': " + std::strerror(rc));
  return PeerProcess(pid);
}

PeerProcess::~PeerProcess() {
  if (pid_ > 0) (void)wait(std::chrono::milliseconds(0));
}

int PeerProcess::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      (void)::waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int fail_child(const char* what, const Status& st) {
  std::fprintf(stderr, "[ peer ] %s: %s\n", what, st.to_string().c_str());
  return 1;
}

std::string unique_socket_path(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "/tmp/hotswap-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".sock";
}

}  // namespace hotswap::migration::testing
