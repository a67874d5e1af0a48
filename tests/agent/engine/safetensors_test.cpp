#include "agent/engine/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/agent/engine/test_models.h"

namespace hotswap::engine {
namespace {

using kernels::DType;
namespace fs = std::filesystem;

TensorToWrite make_tensor(const std::string& name, DType dt, std::vector<int64_t> shape) {
  TensorToWrite t{name, dt, shape, {}};
  int64_t n = 1;
  for (auto d : shape) n *= d;
  t.data.resize(n * kernels::dtype_size(dt));
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<uint8_t>(i * 7 + name.size());
  return t;
}

void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out << std::string(data_bytes, '\0');
}

TEST(Safetensors, WriteThenReadGivesTheSameTensors) {
  std::string dir = testing::temp_dir("st-roundtrip");
  auto a = make_tensor("a.weight", DType::kBF16, {3, 5});
  auto b = make_tensor("b", DType::kF32, {7});
  auto c = make_tensor("c", DType::kF16, {2, 2, 2});
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", {&a, &b, &c}, {{"format", "pt"}}).ok());
  auto f = SafetensorsFile::open(dir + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  for (const auto* t : {&a, &b, &c}) {
    const TensorView& v = (*f)->tensors().at(t->name);
    EXPECT_EQ(v.dtype, t->dtype);
    EXPECT_EQ(v.shape, t->shape);
    ASSERT_EQ(v.bytes, t->data.size());
    EXPECT_EQ(0, std::memcmp(v.data, t->data.data(), v.bytes)) << t->name;
  }
}

TEST(Safetensors, ShardedCheckpointFollowsTheIndex) {
  std::string dir = testing::temp_dir("st-sharded");
  auto a = make_tensor("a", DType::kF32, {4});
  auto b = make_tensor("b", DType::kF32, {6});
  ASSERT_TRUE(write_safetensors(dir + "/model-00001-of-00002.safetensors", {&a}).ok());
  ASSERT_TRUE(write_safetensors(dir + "/model-00002-of-00002.safetensors", {&b}).ok());
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
  auto ck = SafetensorsCheckpoint::open_dir(dir);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ((*ck)->tensors().size(), 2u);
  EXPECT_EQ((*ck)->get("b")->shape, std::vector<int64_t>{6});
  auto missing = (*ck)->get("c");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing tensor 'c'"), std::string::npos);
}

TEST(Safetensors, IndexNamingATensorTheShardLacksIsAnError) {
  std::string dir = testing::temp_dir("st-bad-index");
  auto a = make_tensor("a", DType::kF32, {4});
  ASSERT_TRUE(write_safetensors(dir + "/s1.safetensors", {&a}).ok());
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"a":"s1.safetensors","z":"s1.safetensors"}})";
  auto ck = SafetensorsCheckpoint::open_dir(dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("'z'"), std::string::npos) << ck.status().message();
}

TEST(Safetensors, TruncatedFileNamesTheTensor) {
  std::string dir = testing::temp_dir("st-truncated");
  auto a = make_tensor("a", DType::kF32, {4});
  auto b = make_tensor("big", DType::kF32, {1000});
  std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(write_safetensors(path, {&a, &b}).ok());
  fs::resize_file(path, fs::file_size(path) - 100);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(f.status().message().find("'big'"), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find("truncated"), std::string::npos) << f.status().message();
}

TEST(Safetensors, FileShorterThanItsHeaderIsRejected) {
  std::string dir = testing::temp_dir("st-short");
  std::string path = dir + "/model.safetensors";
  std::ofstream(path, std::ios::binary) << std::string("\xff\xff\x00\x00\x00\x00\x00\x00{}", 10);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("header length"), std::string::npos) << f.status().message();
  std::ofstream(path, std::ios::binary) << "abc";
  EXPECT_FALSE(SafetensorsFile::open(path).ok());
}

TEST(Safetensors, UnsupportedDtypeIsNamed) {
  std::string path = testing::temp_dir("st-dtype") + "/model.safetensors";
  write_raw(path, R"({"x":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(f.status().message().find("'x'"), std::string::npos);
  EXPECT_NE(f.status().message().find("I64"), std::string::npos);
}

TEST(Safetensors, ShapeThatDisagreesWithOffsetsIsRejected) {
  std::string path = testing::temp_dir("st-shape") + "/model.safetensors";
  write_raw(path, R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("needs 12 bytes"), std::string::npos) << f.status().message();
}

TEST(Safetensors, HeaderThatIsNotJsonIsRejected) {
  std::string path = testing::temp_dir("st-json") + "/model.safetensors";
  write_raw(path, R"({"x": nope)", 0);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not a JSON object"), std::string::npos);
}

TEST(Safetensors, MissingCheckpointIsNotFound) {
  auto ck = SafetensorsCheckpoint::open_dir(testing::temp_dir("st-empty"));
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace hotswap::engine
