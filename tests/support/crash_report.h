// A test binary that crashes (a segfault, an abort, a bus error) says where: the test that was
// running, the signal and the faulting thread's stack, on stderr, before it dies of the signal as
// it would have. CI runs each test once, so a rare crash must explain itself the first time.
#pragma once

namespace hotswap::testing {

// Installs the handlers and a gtest listener that records the running test's name. Call once,
// from main(), after InitGoogleTest.
void install_crash_report();

}  // namespace hotswap::testing
