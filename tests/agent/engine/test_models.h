// Synthetic checkpoints for tests, written once per test binary into a temporary directory.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include <gtest/gtest.h>

#include "agent/engine/synthetic_checkpoint.h"

namespace hotswap::engine::testing {

inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("hotswap-test-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A tiny checkpoint (arch, dtype), made on first use and reused by every test in the binary.
inline std::string tiny_model(Architecture arch = Architecture::kLlama, kernels::DType dtype = kernels::DType::kBF16,
                              uint64_t seed = 3) {
  static std::mutex mu;
  static std::map<std::string, std::string> made;
  std::lock_guard<std::mutex> lock(mu);
  std::string key = std::string(architecture_name(arch)) + "-" + kernels::dtype_name(dtype) + "-" + std::to_string(seed);
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  SyntheticModelSpec spec;
  spec.preset = "tiny";
  spec.architecture = arch;
  spec.dtype = dtype;
  spec.seed = seed;
  std::string dir = temp_dir("tiny-" + key);
  Status st = write_synthetic_checkpoint(spec, dir);
  EXPECT_TRUE(st.ok()) << st.to_string();
  made[key] = dir;
  return dir;
}

// Removes the binary's temporary models at exit.
struct TempModelCleanup {
  ~TempModelCleanup() {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind("hotswap-test-" + std::to_string(::getpid()) + "-", 0) == 0) std::filesystem::remove_all(e.path(), ec);
    }
  }
};
inline TempModelCleanup temp_model_cleanup;

}  // namespace hotswap::engine::testing
