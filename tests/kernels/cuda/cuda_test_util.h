// Helpers for the CUDA kernel tests: a fixture that skips loudly without a GPU and owns a
// CudaContext, device buffers, seeded random data, dtype conversions written out naively (the
// reference the kernels are compared with), and a tolerance check that prints the worst
// mismatches.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/ops_cuda.h"

namespace hotswap::kernels::cuda::testing {

// ---- Fixture: every GPU test derives from this. ----

class CudaKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) {
      const char* why = "no CUDA device: cudaGetDeviceCount reported none or failed, so this GPU test is skipped";
      std::fprintf(stderr, "[ GPU SKIP ] %s.%s: %s\n", ::testing::UnitTest::GetInstance()->current_test_suite()->name(),
                   ::testing::UnitTest::GetInstance()->current_test_info()->name(), why);
      GTEST_SKIP() << why;
    }
    auto ctx = create_context(0);
    ASSERT_TRUE(ctx.ok()) << ctx.status().to_string();
    ctx_ = *ctx;
  }

  void TearDown() override {
    if (ctx_.stream == nullptr && ctx_.index_errors == nullptr) return;
    const Status st = destroy_context(ctx_);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }

  // Waits for the stream and expects no execution error and no device-side index error.
  void expect_clean() {
    const Status st = take_index_errors(ctx_);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }

  CudaContext ctx_;
};

// ---- Device memory. ----

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n == 0) return;
    const cudaError_t err = cudaMalloc(&ptr_, n * sizeof(T));
    if (err != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc(" << n * sizeof(T) << " bytes): " << cudaGetErrorString(err);
      ptr_ = nullptr;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }

  // Synchronous: the data is on the device when this returns.
  void upload(const std::vector<T>& host) {
    ASSERT_LE(host.size(), n_);
    if (host.empty()) return;
    ASSERT_EQ(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    // A pageable copy may still be in flight when cudaMemcpy returns, and the ops run on a
    // non-blocking stream that does not wait for the legacy stream: finish it here.
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

  // Synchronous: waits for all prior work on the device (any stream) before copying.
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_ == 0) return host;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// ---- Random data. ----

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// ---- Naive dtype conversions: the reference. ----

inline float ref_f16_to_f32(uint16_t h) {
  const bool neg = (h >> 15) != 0;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant != 0 ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  }
  return neg ? -v : v;
}

// Nearest f16, ties to even, by searching the positive finite f16 values (whose bit patterns
// 0x0000..0x7bff increase with their value); 65536 stands for inf, the next step past 65504.
inline uint16_t ref_f32_to_f16(float f) {
  if (std::isnan(f)) return 0x7e00;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  auto value = [](int h) {
    return h == 0x7c00 ? 65536.0 : static_cast<double>(ref_f16_to_f32(static_cast<uint16_t>(h)));
  };
  if (a >= 65536.0) return static_cast<uint16_t>(sign | 0x7c00);
  int lo = 0;
  int hi = 0x7c00;  // value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (value(mid) <= a) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const double dlo = a - value(lo);
  const double dhi = value(hi) - a;
  int best;
  if (dlo < dhi) {
    best = lo;
  } else if (dhi < dlo) {
    best = hi;
  } else {
    best = (lo & 1) == 0 ? lo : hi;
  }
  return static_cast<uint16_t>(sign | best);
}

inline float ref_bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Nearest bf16, ties to even (finite inputs; NaN keeps its top bits and gets the quiet bit).
inline uint16_t ref_f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t upper = bits >> 16;
  const uint32_t lower = bits & 0xffffu;
  uint32_t r = upper;
  if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u) != 0)) r = upper + 1;
  return static_cast<uint16_t>(r);
}

inline const DType kAllDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// Values stored as dtype t: the raw bytes plus the exact f32 each element decodes to.
struct Stored {
  DType dtype = DType::kF32;
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

inline void ref_store(DType t, void* data, size_t i, float v) {
  switch (t) {
    case DType::kF32:
      std::memcpy(static_cast<uint8_t*>(data) + 4 * i, &v, 4);
      break;
    case DType::kF16: {
      const uint16_t h = ref_f32_to_f16(v);
      std::memcpy(static_cast<uint8_t*>(data) + 2 * i, &h, 2);
      break;
    }
    case DType::kBF16: {
      const uint16_t h = ref_f32_to_bf16(v);
      std::memcpy(static_cast<uint8_t*>(data) + 2 * i, &h, 2);
      break;
    }
  }
}

inline float ref_load(DType t, const void* data, size_t i) {
  const auto* p = static_cast<const uint8_t*>(data);
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return ref_f16_to_f32(h);
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return ref_bf16_to_f32(h);
    }
  }
  return 0.0f;
}

inline Stored store_as(const std::vector<float>& v, DType t) {
  Stored s;
  s.dtype = t;
  s.bytes.resize(v.size() * dtype_size(t));
  s.values.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    ref_store(t, s.bytes.data(), i, v[i]);
    s.values[i] = ref_load(t, s.bytes.data(), i);
  }
  return s;
}

// ---- Comparisons. ----

// Expects |actual[i] - expected[i]| <= atol + rtol * |expected[i]| everywhere (NaN must match
// NaN); reports the count and the first few offenders.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected, double atol,
                         double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    const bool ok = std::isnan(e) ? std::isnan(a) : std::fabs(a - e) <= atol + rtol * std::fabs(e);
    if (!ok) {
      if (bad < 5) first += "\n  [" + std::to_string(i) + "] got " + std::to_string(a) + ", want " + std::to_string(e);
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << actual.size() << " elements off (atol " << atol << ", rtol "
                     << rtol << ")" << first;
}

inline bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline std::string dtype_label(DType t) {
  return dtype_name(t);
}

// A host address the wrappers never dereference: argument checks reject the call first.
inline float* fake_device_ptr(size_t offset_floats = 0) {
  return reinterpret_cast<float*>(uintptr_t{1} << 40) + offset_floats;
}

}  // namespace hotswap::kernels::cuda::testing
