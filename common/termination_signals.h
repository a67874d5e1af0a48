// How a long-running command (`hotswap-agent serve`, `hotswap-operator`) waits for SIGTERM or
// SIGINT: constructed on the main thread before any other thread starts, it blocks both for every
// thread started after it (so only wait() receives them) and ignores SIGPIPE (a peer gone away is
// a write error, not a death).
//
// Threads: construct and wait() on the main thread.
#pragma once

#include <signal.h>

namespace hotswap {

class TerminationSignals {
 public:
  TerminationSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    signal(SIGPIPE, SIG_IGN);
  }
  // Blocks until SIGTERM or SIGINT arrives; returns its name.
  const char* wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig == SIGTERM ? "SIGTERM" : "SIGINT";
  }

 private:
  sigset_t set_;
};

}  // namespace hotswap
