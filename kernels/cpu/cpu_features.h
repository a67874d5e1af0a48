// Which SIMD path the CPU kernels take. The library is compiled for baseline x86-64; the AVX2
// kernels are separate functions compiled with target("avx2,fma,f16c") and chosen at run time,
// so one binary runs on any x86-64 and is fast on the machines that have AVX2.
//
// Results may differ in the last bits between the SIMD and the scalar path (different reduction
// trees), but within one path they are deterministic and batch-invariant.
#pragma once

namespace hotswap::kernels::detail {

// The CPU (and OS) support AVX2, FMA and F16C.
bool cpu_has_avx2_fma_f16c();

// cpu_has_avx2_fma_f16c() unless turned off with set_simd_enabled(false).
bool simd_enabled();

// Forces the scalar path (false) or restores the default (true). For tests and benchmarks that
// compare the two paths; not meant to be flipped while kernels run on other threads.
void set_simd_enabled(bool enabled);

}  // namespace hotswap::kernels::detail
