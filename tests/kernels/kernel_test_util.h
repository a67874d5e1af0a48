// Helpers shared by the kernel tests: seeded random data, weights stored in each dtype, and the
// f32 values such stored weights hold (what a naive reference must use).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/dtype.h"

namespace hotswap::kernels::testing {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Values stored as dtype t: raw bytes plus the exact f32 each element decodes to.
struct StoredTensor {
  DType dtype = DType::kF32;
  std::vector<uint8_t> bytes;
  std::vector<float> values;

  const void* data() const { return bytes.data(); }
};

inline StoredTensor store_as(const std::vector<float>& v, DType t) {
  StoredTensor s;
  s.dtype = t;
  s.bytes.resize(v.size() * dtype_size(t));
  s.values.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    store_from_f32(s.bytes.data(), t, i, v[i]);
    s.values[i] = load_as_f32(s.bytes.data(), t, i);
  }
  return s;
}

inline const DType kAllDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

inline bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs the body once with the SIMD kernels (where the CPU has them) and once with the scalar
// fallback, restoring the default afterwards.
class SimdPath {
 public:
  explicit SimdPath(bool simd) { detail::set_simd_enabled(simd); }
  ~SimdPath() { detail::set_simd_enabled(true); }
  SimdPath(const SimdPath&) = delete;
  SimdPath& operator=(const SimdPath&) = delete;
};

inline std::string path_name(bool simd) {
  return simd ? "simd" : "scalar";
}

}  // namespace hotswap::kernels::testing
