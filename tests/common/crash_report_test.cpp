// The test binaries' crash report (tests/support/crash_report.h): a crashing test names itself,
// the signal and its stack, and the process still dies of that signal.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

// Out of line, with external linkage and exported (ENABLE_EXPORTS), so the report's stack can
// name it.
[[gnu::noinline]] void crash_report_test_segfault_here();
void crash_report_test_segfault_here() {
  ::raise(SIGSEGV);
  asm volatile("" ::: "memory");  // not a tail call: this frame stays on the stack
}

namespace {

// The "fast" death-test style forks inside the test, so the child knows which test it is in.

TEST(CrashReportDeathTest, ASegfaultNamesTheTestTheSignalAndTheStack) {
  EXPECT_EXIT(crash_report_test_segfault_here(), ::testing::KilledBySignal(SIGSEGV),
              "fatal signal 11 \\(SEGV\\) in thread [0-9]+ at address .* during "
              "CrashReportDeathTest\\.ASegfaultNamesTheTestTheSignalAndTheStack\n"
              "\\*\\*\\* stack .*crash_report_test_segfault_here.*\\*\\*\\* end of stack");
}

TEST(CrashReportDeathTest, AnAbortIsReportedAndStillAnAbort) {
  EXPECT_EXIT(std::abort(), ::testing::KilledBySignal(SIGABRT),
              "fatal signal 6 \\(ABRT\\) in thread [0-9]+ during CrashReportDeathTest\\.AnAbortIsReportedAndStillAnAbort");
}

}  // namespace
