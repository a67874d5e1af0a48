#include "agent/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace hotswap::engine {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// Header sizes beyond this are not a real checkpoint (the format's own reference caps at 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Status parse_tensor_entry(const std::string& path, const std::string& name, const json& entry, const uint8_t* data,
                          uint64_t data_bytes, TensorView* out) {
  auto where = path + ": tensor '" + name + "'";
  if (!entry.is_object()) return data_loss(where + ": header entry is not an object");
  if (!entry.contains("dtype") || !entry["dtype"].is_string())
    return data_loss(where + ": header entry has no string 'dtype'");
  std::string dtype_name = entry["dtype"].get<std::string>();
  auto dtype = kernels::parse_dtype(dtype_name);
  if (!dtype || (dtype_name != "F32" && dtype_name != "F16" && dtype_name != "BF16"))
    return unimplemented(where + ": unsupported dtype '" + dtype_name + "' (supported: F32, F16, BF16)");
  if (!entry.contains("shape") || !entry["shape"].is_array()) return data_loss(where + ": header entry has no 'shape'");
  out->shape.clear();
  for (const auto& d : entry["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) return data_loss(where + ": shape has a bad dimension");
    out->shape.push_back(d.get<int64_t>());
  }
  const auto& off = entry.contains("data_offsets") ? entry["data_offsets"] : json();
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    return data_loss(where + ": 'data_offsets' must be two non-negative integers");
  uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end) return data_loss(where + ": data_offsets begin > end");
  if (end > data_bytes)
    return data_loss(where + ": data ends at byte " + std::to_string(end) + " but the file holds only " +
                     std::to_string(data_bytes) + " bytes of data (truncated file?)");
  out->name = name;
  out->dtype = *dtype;
  out->data = data + begin;
  out->bytes = end - begin;
  out->file = path;
  uint64_t expect = static_cast<uint64_t>(out->numel()) * kernels::dtype_size(*dtype);
  if (out->bytes != expect)
    return data_loss(where + ": shape " + shape_string(out->shape) + " of " + dtype_name + " needs " +
                     std::to_string(expect) + " bytes, data_offsets give " + std::to_string(out->bytes));
  return Status();
}

}  // namespace

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return unavailable(path + ": cannot stat: " + std::strerror(errno));
  }
  uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < 8) {
    ::close(fd);
    return data_loss(path + ": file is " + std::to_string(file_bytes) + " bytes, too short for a safetensors header");
  }
  void* map = mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return unavailable(path + ": mmap failed: " + std::strerror(errno));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_bytes_ = file_bytes;

  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];
  if (header_bytes > kMaxHeaderBytes || header_bytes > file_bytes - 8)
    return data_loss(path + ": header length " + std::to_string(header_bytes) + " exceeds the file size " +
                     std::to_string(file_bytes) + " (truncated or not a safetensors file)");
  json header = json::parse(bytes + 8, bytes + 8 + header_bytes, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return data_loss(path + ": header is not a JSON object");

  const uint8_t* data = bytes + 8 + header_bytes;
  uint64_t data_bytes = file_bytes - 8 - header_bytes;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return data_loss(path + ": __metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        if (m.value().is_string()) file->metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    TensorView view;
    HOTSWAP_RETURN_IF_ERROR(parse_tensor_entry(path, it.key(), it.value(), data, data_bytes, &view));
    // The format does not promise alignment; the kernels need it. A misaligned tensor (rare:
    // writers order tensors by element size) is copied once into aligned memory.
    if (reinterpret_cast<uintptr_t>(view.data) % kernels::dtype_size(view.dtype) != 0) {
      auto copy = std::make_unique<uint64_t[]>((view.bytes + 7) / 8);
      std::memcpy(copy.get(), view.data, view.bytes);
      view.data = copy.get();
      file->owned_.push_back(std::move(copy));
    }
    file->tensors_.emplace(it.key(), std::move(view));
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::open_dir(const std::string& dir) {
  auto ckpt = std::make_unique<SafetensorsCheckpoint>();
  ckpt->dir_ = dir;
  fs::path single = fs::path(dir) / "model.safetensors";
  fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  json weight_map;
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    json index = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.is_object())
      return data_loss(index_path.string() + ": not valid JSON");
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      return data_loss(index_path.string() + ": no 'weight_map' object");
    weight_map = index["weight_map"];
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      if (!it.value().is_string())
        return data_loss(index_path.string() + ": weight_map['" + it.key() + "'] is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        return invalid_argument(index_path.string() + ": weight_map['" + it.key() + "'] = '" + shard +
                                "' is not a file in the model directory");
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end()) shard_names.push_back(shard);
    }
  } else if (fs::exists(single)) {
    shard_names.push_back("model.safetensors");
  } else {
    return not_found(dir + ": no model.safetensors or model.safetensors.index.json");
  }

  for (const auto& shard : shard_names) {
    HOTSWAP_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open((fs::path(dir) / shard).string()));
    for (const auto& [name, view] : file->tensors()) {
      if (!weight_map.is_null()) {
        if (!weight_map.contains(name)) continue;  // the index decides which shard owns a tensor
        if (weight_map[name].get<std::string>() != shard) continue;
      }
      if (ckpt->index_.count(name))
        return data_loss(dir + ": tensor '" + name + "' appears in more than one shard");
      ckpt->index_.emplace(name, view);
    }
    ckpt->files_.push_back(std::move(file));
  }
  if (!weight_map.is_null()) {
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it)
      if (!ckpt->index_.count(it.key()))
        return data_loss(index_path.string() + ": tensor '" + it.key() + "' is listed for shard '" +
                         it.value().get<std::string>() + "' but that shard does not hold it");
  }
  return ckpt;
}

StatusOr<TensorView> SafetensorsCheckpoint::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return not_found(dir_ + ": missing tensor '" + name + "'");
  return it->second;
}

size_t SafetensorsCheckpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& [_, v] : index_) n += v.bytes;
  return n;
}

Status write_safetensors(const std::string& path, const std::vector<const TensorToWrite*>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  // Larger elements first, as the reference writer does, so every tensor is aligned.
  std::vector<const TensorToWrite*> ordered(tensors);
  std::stable_sort(ordered.begin(), ordered.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    return kernels::dtype_size(a->dtype) > kernels::dtype_size(b->dtype);
  });
  uint64_t offset = 0;
  for (const auto* t : ordered) {
    int64_t numel = 1;
    for (int64_t d : t->shape) numel *= d;
    if (static_cast<uint64_t>(numel) * kernels::dtype_size(t->dtype) != t->data.size())
      return invalid_argument(path + ": tensor '" + t->name + "' has " + std::to_string(t->data.size()) +
                              " bytes for shape " + shape_string(t->shape));
    header[t->name] = {{"dtype", kernels::dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->data.size()}}};
    offset += t->data.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // data starts 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return unavailable(path + ": cannot create: " + std::strerror(errno));
  uint64_t n = text.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto* t : ordered) out.write(reinterpret_cast<const char*>(t->data.data()), t->data.size());
  out.close();
  if (!out) return unavailable(path + ": write failed: " + std::strerror(errno));
  return Status();
}

}  // namespace hotswap::engine
