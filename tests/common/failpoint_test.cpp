// Crash points: a listed name kills the process with SIGKILL, any other returns.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "common/failpoint.h"

namespace hotswap {
namespace {

TEST(Failpoint, NamesAreMatchedWholeInACommaSeparatedList) {
  EXPECT_TRUE(failpoint_listed("migration/enter:PreCopy", "migration/enter:PreCopy"));
  EXPECT_TRUE(failpoint_listed("a, migration/enter:PreCopy ,b", "migration/enter:PreCopy"));
  EXPECT_TRUE(failpoint_listed("a,b", "b"));
  EXPECT_FALSE(failpoint_listed("migration/enter:PreCopyX", "migration/enter:PreCopy"));
  EXPECT_FALSE(failpoint_listed("migration/enter:Pre", "migration/enter:PreCopy"));
  EXPECT_FALSE(failpoint_listed("", "a"));
  EXPECT_FALSE(failpoint_listed(",,", ""));
}

// How a child that sets $HOTSWAP_FAILPOINTS to `list` and passes the point `name` ends: the
// signal that killed it, or 0 when it exited (it exits 0 after the point).
int end_of_child(const char* list, const char* name) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("HOTSWAP_FAILPOINTS", list, 1);
    failpoint(name);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  return 0;
}

TEST(Failpoint, AListedPointKillsTheProcessAndAnyOtherPasses) {
  EXPECT_EQ(end_of_child("x,migration/target-gated", "migration/target-gated"), SIGKILL);
  EXPECT_EQ(end_of_child("x,migration/target-gated", "migration/enter:Draining"), 0);
  EXPECT_EQ(end_of_child("", "migration/target-gated"), 0);
}

}  // namespace
}  // namespace hotswap
