// Reading and writing safetensors files, the Hugging Face weight format.
//
// A file is: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}),
// then the data, offsets relative to its start. Reading maps the file (mmap, read-only, shared)
// so weights are paged in from the page cache on first touch and never copied on the CPU path.
// A checkpoint of several shards is described by model.safetensors.index.json ("weight_map":
// tensor name -> shard file); SafetensorsCheckpoint opens either form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/dtype.h"

namespace hotswap::engine {

using kernels::DType;

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the mapping; valid while the file is open
  size_t bytes = 0;
  std::string file;            // the shard it came from, for error messages

  int64_t numel() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<uint64_t[]>> owned_;  // aligned copies of misaligned tensors
};

// All tensors of a model directory: model.safetensors, or the shards that
// model.safetensors.index.json names.
class SafetensorsCheckpoint {
 public:
  static StatusOr<std::unique_ptr<SafetensorsCheckpoint>> open_dir(const std::string& dir);

  // The tensor, or not_found naming it and the directory.
  StatusOr<TensorView> get(const std::string& name) const;
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const std::map<std::string, TensorView>& tensors() const { return index_; }
  size_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> index_;
};

// A tensor to write: data is copied out of `data` at write time.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // numel * dtype_size bytes, little-endian
};

// Writes one .safetensors file: data 8-byte aligned after the header, tensors ordered by element
// size (largest first) so each is aligned to its element size.
Status write_safetensors(const std::string& path, const std::vector<const TensorToWrite*>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace hotswap::engine
