#include "tests/support/crash_report.h"

#include <execinfo.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

namespace hotswap::testing {
namespace {

// The running test, written by the listener and read by the handler: a fixed buffer, since a
// handler may not allocate or lock.
char g_test_name[512] = "(no test running)";
std::atomic<bool> g_in_handler{false};

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

void write_all(const char* s, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

void write_str(const char* s) { write_all(s, std::strlen(s)); }

void write_number(long v) {
  char buf[24];
  int i = sizeof(buf);
  const bool negative = v < 0;
  unsigned long u = negative ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    buf[--i] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0 && i > 1);
  if (negative) buf[--i] = '-';
  write_all(buf + i, sizeof(buf) - static_cast<size_t>(i));
}

void on_fatal_signal(int sig, siginfo_t* info, void*) {
  // A second fault while reporting (or in another thread at once): let the default action run.
  if (!g_in_handler.exchange(true)) {
    write_str("\n*** fatal signal ");
    write_number(sig);
    write_str(" (");
    write_str(sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    write_str(") in thread ");
    write_number(static_cast<long>(::syscall(SYS_gettid)));
    if (sig == SIGSEGV || sig == SIGBUS) {
      char addr[32];
      std::snprintf(addr, sizeof(addr), " at address %p", info->si_addr);  // no allocation for %p
      write_str(addr);
    }
    write_str(" during ");
    write_str(g_test_name);
    write_str("\n*** stack (addr2line -Cfe <binary> <offset> for a static function):\n");
    void* frames[64];
    const int n = ::backtrace(frames, 64);
    ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
    write_str("*** end of stack\n");
  }
  // SA_RESETHAND restored the default action: die of the same signal, so the exit status and
  // any core dump are what they would have been.
  ::raise(sig);
}

class TestNameRecorder : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    std::snprintf(g_test_name, sizeof(g_test_name), "%s.%s", info.test_suite_name(), info.name());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::snprintf(g_test_name, sizeof(g_test_name), "the teardown after %s.%s", info.test_suite_name(),
                  info.name());
  }
};

}  // namespace

void install_crash_report() {
  // backtrace() loads libgcc on first use, which allocates: do it now, not in the handler.
  void* warm[1];
  ::backtrace(warm, 1);
  // An alternate stack, so a stack overflow on the main thread is reported too.
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof(alt_stack);
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_fatal_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals) ::sigaction(sig, &sa, nullptr);
  ::testing::UnitTest::GetInstance()->listeners().Append(new TestNameRecorder);
}

}  // namespace hotswap::testing
