// Pod containers as local processes: $(VAR) expansion, environment, logs, exit codes, and
// graceful stop (SIGTERM, then SIGKILL after the grace period) of the whole process group.
#include "e2e/devcluster/nodes/local_process.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<ProcessExit> wait_exit(LocalProcess& p, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto e = p.poll()) return e;
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

class LocalProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("local-process-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string log() const { return (dir_ / "log").string(); }
  std::filesystem::path dir_;
};

TEST(ExpandEnvReferences, FollowsTheKubeletsRules) {
  const std::map<std::string, std::string> env = {{"POD_IP", "127.0.1.3"}, {"PORT", "8080"}};
  EXPECT_EQ(expand_env_references("--host=$(POD_IP):$(PORT)", env), "--host=127.0.1.3:8080");
  EXPECT_EQ(expand_env_references("$$(POD_IP)", env), "$(POD_IP)");
  EXPECT_EQ(expand_env_references("$(MISSING) $(", env), "$(MISSING) $(");
}

TEST_F(LocalProcessTest, RunsWithItsEnvironmentAndWritesItsLog) {
  auto p = LocalProcess::start({"sh", "-c", "echo ip=$POD_IP; echo err >&2; exit 7"}, {{"POD_IP", "127.0.1.9"}}, log());
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto e = wait_exit(*p);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->exit_code, 7);
  EXPECT_EQ(e->signal, 0);
  EXPECT_EQ(slurp(log()), "ip=127.0.1.9\nerr\n");
}

TEST_F(LocalProcessTest, StopSendsTermFirstAndTheProcessMayExitCleanly) {
  auto p = LocalProcess::start({"sh", "-c", "trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.05; done"}, {},
                               log());
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 200 && slurp(log()).find("up") == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(p->poll().has_value());
  const auto t0 = std::chrono::steady_clock::now();
  const ProcessExit e = p->stop(5000ms);
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4000ms);
  EXPECT_NE(slurp(log()).find("bye"), std::string::npos);
}

TEST_F(LocalProcessTest, AProcessThatIgnoresTermIsKilledAfterTheGracePeriod) {
  auto p = LocalProcess::start({"sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"}, {}, log());
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 200 && slurp(log()).find("up") == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  const auto t0 = std::chrono::steady_clock::now();
  const ProcessExit e = p->stop(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(e.signal, 9);
  EXPECT_EQ(e.exit_code, 137);
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3000ms);
}

TEST_F(LocalProcessTest, AMissingExecutableIsAClearError) {
  auto p = LocalProcess::start({"no-such-program-hotswap"}, {{"PATH", "/usr/bin:/bin"}}, log());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(p.status().message(), "executable \"no-such-program-hotswap\" not found in $PATH");
  EXPECT_EQ(LocalProcess::start({}, {}, log()).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hotswap::devcluster
