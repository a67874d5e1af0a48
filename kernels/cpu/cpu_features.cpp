// Run-time CPU feature detection for the SIMD kernels (see cpu_features.h).
#include "kernels/cpu/cpu_features.h"

#include <atomic>

namespace hotswap::kernels::detail {
namespace {

std::atomic<bool> g_simd_allowed{true};

}  // namespace

bool cpu_has_avx2_fma_f16c() {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's checks include the OS having enabled the AVX register state (XCR0).
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

bool simd_enabled() {
  return g_simd_allowed.load(std::memory_order_relaxed) && cpu_has_avx2_fma_f16c();
}

void set_simd_enabled(bool enabled) {
  g_simd_allowed.store(enabled, std::memory_order_relaxed);
}

}  // namespace hotswap::kernels::detail
