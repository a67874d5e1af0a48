// `hotswap-agent serve` as a child process for the tests that need a real one (signals, flags,
// kill -9): a free port, the test control token, its stderr to a log when asked. Killed
// (SIGKILL) and reaped if the test did not end it.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/http.h"
#include "tests/agent/engine/test_models.h"
#include "tests/agent/server/server_test_util.h"

namespace hotswap::testing {

// A child process running the agent; killed (SIGKILL) if the test did not end it.
struct AgentProcess {
  pid_t pid = -1;
  int port = 0;
  // extra: more flags; env: variables set in the child; log: where its stderr goes (if set).
  explicit AgentProcess(const std::string& model, std::vector<std::string> extra = {},
                        std::vector<std::pair<std::string, std::string>> env = {}, const std::string& log = "") {
    port = http::pick_free_port().value();
    std::string token_file = engine::testing::temp_dir("serve-proc") + "/token";
    std::ofstream(token_file) << testing::kControlToken << "\n";
    std::vector<std::string> args = {HOTSWAP_AGENT_BIN, "serve", "--model", model, "--model-name", "tiny",
                                     "--port", std::to_string(port), "--threads", "2", "--grace-seconds", "20"};
    bool token_from_env = false;
    for (const auto& [k, v] : env) token_from_env = token_from_env || k == "HOTSWAP_CONTROL_TOKEN";
    if (!token_from_env) args.insert(args.end(), {"--control-token-file", token_file});
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = fork();
    if (pid == 0) {
      unsetenv("HOTSWAP_GPU_SPEED_FACTOR");
      unsetenv("HOTSWAP_GPU_SPEED_REFERENCE");
      unsetenv("HOTSWAP_CONTROL_TOKEN");
      for (const char* v : {"HOTSWAP_MIGRATION_TLS_CA", "HOTSWAP_MIGRATION_TLS_CERT", "HOTSWAP_MIGRATION_TLS_KEY"}) unsetenv(v);
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      if (!log.empty()) freopen(log.c_str(), "w", stderr);
      execv(HOTSWAP_AGENT_BIN, argv.data());
      _exit(127);
    }
  }
  bool wait_ready() {
    for (int i = 0; i < 400; ++i) {
      if (testing::http_call(port, "GET", "/readyz").status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
  // The exit status, or -1 if it did not exit within the bound.
  int wait_exit(std::chrono::seconds bound) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  // kill -9, and reaped.
  void kill9() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  ~AgentProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace hotswap::testing
