// main() of the test binaries: gtest's, plus a crash report (crash_report.h).
#include <gtest/gtest.h>

#include "tests/support/crash_report.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hotswap::testing::install_crash_report();
  return RUN_ALL_TESTS();
}
