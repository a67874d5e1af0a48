// main() of hotswap_migration_gpu_tests: a child started by PeerProcess runs its role; otherwise
// the tests run, with a crash report (tests/support/crash_report.h).
#include <gtest/gtest.h>

#include "tests/agent/migration/cuda/peer_process.h"
#include "tests/support/crash_report.h"

int main(int argc, char** argv) {
  bool ran = false;
  const int rc = hotswap::migration::testing::run_peer_role(argc, argv, &ran);
  if (ran) return rc;
  ::testing::InitGoogleTest(&argc, argv);
  hotswap::testing::install_crash_report();
  return RUN_ALL_TESTS();
}
