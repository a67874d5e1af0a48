// Skipping loudly: a GPU test that lacks the devices it needs says so on stderr and in the
// GoogleTest skip message, as tests/kernels/cuda's fixture does.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace hotswap::migration::testing {

// Empty when `need` CUDA devices are visible; otherwise why the test is skipped.
inline std::string missing_gpus(int need, const std::string& why_needed) {
  const int have = kernels::cuda::device_count();
  if (have >= need) return "";
  return "needs " + std::to_string(need) + " CUDA device" + (need == 1 ? "" : "s") + " (" + why_needed + "); " +
         std::to_string(have) + " visible (cudaGetDeviceCount found " + (have == 0 ? "none or failed" : "fewer") +
         "), so this GPU test is skipped";
}

inline void announce_skip(const std::string& why) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::fprintf(stderr, "[ GPU SKIP ] %s.%s: %s\n", info->test_suite_name(), info->name(), why.c_str());
}

}  // namespace hotswap::migration::testing

// In a test body: returns (skipped) unless `need` GPUs are visible.
#define HOTSWAP_REQUIRE_GPUS(need, why_needed)                                                  \
  do {                                                                                          \
    const std::string _missing = ::hotswap::migration::testing::missing_gpus(need, why_needed); \
    if (!_missing.empty()) {                                                                    \
      ::hotswap::migration::testing::announce_skip(_missing);                                   \
      GTEST_SKIP() << _missing;                                                                 \
    }                                                                                           \
  } while (0)
