#include "agent/migration/model_digest.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "agent/migration/crc32c.h"

namespace hotswap::migration {

namespace fs = std::filesystem;

StatusOr<std::string> model_weights_digest(const std::string& model_dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") files.push_back(entry.path());
  if (ec) return not_found(model_dir + ": " + ec.message());
  if (files.empty()) return not_found(model_dir + ": no .safetensors files");
  std::sort(files.begin(), files.end());
  uint32_t crc = 0;
  uint64_t total = 0;
  std::vector<char> buf(8 << 20);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return unavailable(f.string() + ": cannot read");
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      std::streamsize n = in.gcount();
      if (n <= 0) break;
      crc = crc32c_extend(crc, buf.data(), static_cast<size_t>(n));
      total += static_cast<uint64_t>(n);
    }
  }
  char hex[32];
  std::snprintf(hex, sizeof(hex), "%08x%016llx", crc, static_cast<unsigned long long>(total));
  return std::string(hex);
}

}  // namespace hotswap::migration
