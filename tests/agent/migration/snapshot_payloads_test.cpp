#include "agent/migration/snapshot_payloads.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/agent/migration/snapshot_test_util.h"

namespace hotswap::migration {
namespace {

using nlohmann::json;
using testing::sample_manifest;
using testing::sample_queued;
using testing::sample_sequence;
using testing::small_layout;

void expect_error(const Status& st, StatusCode code, const std::string& substring) {
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), code) << st.to_string();
  EXPECT_NE(st.message().find(substring), std::string::npos)
      << "message: " << st.message() << "\nexpected to contain: " << substring;
}

std::vector<uint8_t> bytes_of_json(const json& j) {
  const std::string s = j.dump();
  return {s.begin(), s.end()};
}

json sequence_json() {
  auto bytes = sample_sequence("seq-a", 7).encode();
  EXPECT_TRUE(bytes.ok());
  return json::parse(bytes->begin(), bytes->end());
}

TEST(SnapshotPayloads, ManifestRoundTrips) {
  const Manifest m = sample_manifest();
  auto bytes = m.encode();
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto back = Manifest::decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  const json j = json::parse(bytes->begin(), bytes->end());
  EXPECT_EQ(j["weight_dtype"], "BF16");
  EXPECT_EQ(j["kv_layout"]["dtype"], "F16");
}

TEST(SnapshotPayloads, SequenceStateRoundTripsWithNonUtf8TextAsBase64) {
  const SequenceState s = sample_sequence("seq-a", 7);
  auto bytes = s.encode();
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto back = SequenceState::decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, s);
  EXPECT_EQ(back->stream.text_bytes, std::string("Hi \x00!\xff\xe2\x82", 8));
  EXPECT_EQ(back->sampling.seed, 0xFEDCBA9876543210ull);  // all 64 bits survive JSON
  const json j = json::parse(bytes->begin(), bytes->end());
  EXPECT_EQ(j["stream"]["text_bytes_base64"], "SGkgACH/4oI=");
}

TEST(SnapshotPayloads, FinishedSequenceStateRoundTripsAndCarriesNoKv) {
  SequenceState s = sample_sequence("seq-f", 0);
  s.finished = true;
  auto bytes = s.encode();
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto back = SequenceState::decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, s);
  // Not finished: the field is not written at all (older decoders see the same bytes).
  EXPECT_NE(std::string(bytes->begin(), bytes->end()).find("\"finished\":true"), std::string::npos);
  auto plain = sample_sequence("seq-f", 0).encode();
  EXPECT_EQ(std::string(plain->begin(), plain->end()).find("finished"), std::string::npos);
  SequenceState bad = sample_sequence("seq-f", 7);
  bad.finished = true;
  EXPECT_EQ(bad.encode().status().code(), StatusCode::kInvalidArgument);
  auto j = nlohmann::json::parse(std::string(plain->begin(), plain->end()));
  j["position"] = 2;
  j["kv_blocks"] = 1;
  j["finished"] = true;
  std::string text = j.dump();
  auto refused = SequenceState::decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("field 'finished' is true, but position 2"), std::string::npos);
}

TEST(SnapshotPayloads, QueuedRequestRoundTripsAsASequenceStateWithoutKv) {
  const QueuedRequest q = sample_queued("queued-1");
  auto bytes = q.encode();
  ASSERT_TRUE(bytes.ok());
  auto back = QueuedRequest::decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, q);
  EXPECT_EQ(back->position, 0);
  EXPECT_EQ(back->kv_blocks, 0);
}

TEST(SnapshotPayloads, KvBlocksRoundTripsAndDecodesAsAViewIntoThePayload) {
  std::vector<uint8_t> data(3 * 256);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  KvBlocks b{"cmpl-123", 5, 3, 2, 256, data};
  auto bytes = b.encode();
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  EXPECT_EQ(bytes->size(), kv_blocks_header_bytes(8) + data.size());
  EXPECT_EQ(kv_blocks_header_bytes(8) % 16, 0u);
  auto back = KvBlocks::decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->request_id, "cmpl-123");
  EXPECT_EQ(back->first_block, 5);
  EXPECT_EQ(back->count, 3);
  EXPECT_EQ(back->round, 2);
  EXPECT_EQ(back->block_bytes, 256u);
  // A view: no copy of the block bytes, and 16-byte aligned within the payload.
  EXPECT_EQ(back->data.data(), bytes->data() + kv_blocks_header_bytes(8));
  EXPECT_EQ(std::vector<uint8_t>(back->data.begin(), back->data.end()), data);
}

TEST(SnapshotPayloads, KvBlocksSubHeaderThenPoolBytesIsTheWholePayload) {
  std::vector<uint8_t> data(2 * 64, 0xAB);
  KvBlocks b{"r", 0, 2, 0, 64, data};
  auto header = encode_kv_blocks_header(b);
  ASSERT_TRUE(header.ok());
  std::vector<uint8_t> payload = *header;
  payload.insert(payload.end(), data.begin(), data.end());
  EXPECT_EQ(payload, *b.encode());
}

TEST(SnapshotPayloads, KvBlocksDecodeRefusesDataNotMatchingTheCount) {
  std::vector<uint8_t> data(2 * 64, 1);
  auto bytes = KvBlocks{"r", 0, 2, 0, 64, data}.encode();
  ASSERT_TRUE(bytes.ok());
  bytes->pop_back();
  expect_error(KvBlocks::decode(*bytes).status(), StatusCode::kInvalidArgument,
               "payload carries 127 block bytes, 2 blocks of 64 bytes are 128");
}

TEST(SnapshotPayloads, KvBlocksDecodeRefusesNonZeroPaddingAndBadLengths) {
  std::vector<uint8_t> data(64, 1);
  auto bytes = KvBlocks{"r", 0, 1, 0, 64, data}.encode();
  ASSERT_TRUE(bytes.ok());
  auto padded = *bytes;
  padded[kKvBlocksFixedBytes + 1] = 9;
  expect_error(KvBlocks::decode(padded).status(), StatusCode::kInvalidArgument, "padding byte 41 is not zero");
  auto long_id = *bytes;
  long_id[4] = 0;
  long_id[5] = 2;  // 512-byte request id
  expect_error(KvBlocks::decode(long_id).status(), StatusCode::kInvalidArgument, "request id length 512");
  expect_error(KvBlocks::decode(std::span<const uint8_t>(bytes->data(), 10)).status(), StatusCode::kInvalidArgument,
               "shorter than the 40-byte sub-header");
  auto zero_count = *bytes;
  zero_count[16] = 0;
  expect_error(KvBlocks::decode(zero_count).status(), StatusCode::kInvalidArgument, "block count 0");
}

TEST(SnapshotPayloads, EndRoundTrips) {
  End e{2, 1, 3, 1536};
  auto back = End::decode(e.encode());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, e);
}

TEST(SnapshotPayloads, DecodeIgnoresUnknownFields) {
  json j = sequence_json();
  j["added_in_a_later_writer"] = {1, 2, 3};
  j["sampling"]["min_p"] = 0.05;
  auto back = SequenceState::decode(bytes_of_json(j));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, sample_sequence("seq-a", 7));
}

TEST(SnapshotPayloads, DecodeNamesAMissingField) {
  json j = sequence_json();
  j["stop"].erase("ignore_eos");
  expect_error(SequenceState::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'stop.ignore_eos' is missing");
}

TEST(SnapshotPayloads, DecodeNamesAFieldOfTheWrongType) {
  json j = sequence_json();
  j["position"] = "7";
  expect_error(SequenceState::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'position' is a string, expected an integer");
  j = sequence_json();
  j["position"] = 7.5;
  expect_error(SequenceState::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'position' is a fractional number, expected an integer");
  j = sequence_json();
  j["sampling"]["seed"] = -1;
  expect_error(SequenceState::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'sampling.seed' is -1, expected an unsigned 64-bit integer");
}

TEST(SnapshotPayloads, DecodeRefusesValuesOutOfRange) {
  struct Case {
    const char* pointer;
    json value;
    const char* message;
  };
  const Case cases[] = {
      {"/sampling/top_p", 1.5, "field 'sampling.top_p' is 1.5, outside (0.0, 1.0]"},
      {"/sampling/top_p", 0, "field 'sampling.top_p' is 0, outside (0.0, 1.0]"},
      {"/sampling/temperature", -0.5, "field 'sampling.temperature' is -0.5"},
      {"/prompt/2", -3, "field 'prompt[2]' is -3, outside [0, 2147483647]"},
      {"/generated/0", 4294967296ll, "field 'generated[0]' is 4294967296"},
      {"/position", 100, "field 'position' is 100, outside [0, 8]"},
      {"/kv_blocks", 8, "field 'kv_blocks' is 8, outside [0, 7]"},
      {"/stop/max_tokens", 0, "field 'stop.max_tokens' is 0, outside [1, 2147483647]"},
      {"/stop/max_tokens", 2, "holds 3 tokens, more than stop.max_tokens 2"},
      {"/stream/last_event_id", -2, "field 'stream.last_event_id' is -2"},
      {"/stream/text_emitted_bytes", 9, "field 'stream.text_emitted_bytes' is 9, outside [0, 8]"},
      {"/stream/text_bytes_base64", "SGk", "not a multiple of 4"},
      {"/request_id", "", "field 'request_id' is empty"},
      {"/request_id", std::string(257, 'x'), "is 257 bytes, more than 256"},
      {"/prompt", json::array(), "field 'prompt' is empty"},
      {"/params", json::array(), "field 'params' is an array, expected an object"},
  };
  for (const auto& c : cases) {
    json j = sequence_json();
    j[json::json_pointer(c.pointer)] = c.value;
    expect_error(SequenceState::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument, c.message);
  }
}

TEST(SnapshotPayloads, ManifestDecodeRefusesBadDtypeDigestAndLayout) {
  auto manifest_json = [] {
    auto b = sample_manifest().encode();
    return json::parse(b->begin(), b->end());
  };
  json j = manifest_json();
  j["weight_dtype"] = "f16";  // parse_dtype's alias, not the format's spelling
  expect_error(Manifest::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'weight_dtype' is \"f16\", expected \"F32\", \"F16\" or \"BF16\"");
  j = manifest_json();
  j["recompute_only"] = "yes";
  expect_error(Manifest::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'recompute_only' is \"yes\", expected a boolean");
  Manifest recompute = sample_manifest();
  recompute.recompute_only = true;
  EXPECT_EQ(*Manifest::decode(*recompute.encode()), recompute);
  EXPECT_FALSE(Manifest::decode(*sample_manifest().encode())->recompute_only);  // absent: false
  j = manifest_json();
  j["model_digest"] = "sha256:abc";
  expect_error(Manifest::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument, "expected hex digits");
  j = manifest_json();
  j["kv_layout"]["n_layers"] = 0;
  expect_error(Manifest::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "field 'kv_layout.n_layers' is 0, outside [1, 4096]");
  j = manifest_json();
  j["kv_layout"] = {{"n_layers", 4096}, {"n_kv_heads", 64}, {"head_dim", 256}, {"block_size", 64}, {"dtype", "F32"}};
  expect_error(Manifest::decode(bytes_of_json(j)).status(), StatusCode::kInvalidArgument,
               "one block must fit in a 67108864-byte chunk payload");
}

TEST(SnapshotPayloads, DecodeRefusesNonJsonAndNonObjects) {
  expect_error(End::decode(byte_span("{\"sequences\": 1,")).status(), StatusCode::kInvalidArgument,
               "payload is not JSON: parse error");
  expect_error(End::decode(byte_span("[1, 2]")).status(), StatusCode::kInvalidArgument,
               "payload is an array, expected a JSON object");
  expect_error(End::decode(byte_span("")).status(), StatusCode::kInvalidArgument, "payload is not JSON");
}

TEST(SnapshotPayloads, DecodeRefusesDeepNestingBeforeParsing) {
  std::string deep = "{\"a\":";
  for (int i = 0; i < 100000; ++i) deep += '[';
  expect_error(End::decode(byte_span(deep)).status(), StatusCode::kInvalidArgument,
               "JSON nested deeper than 32 levels");
  // Brackets inside strings are text, not nesting.
  auto e =
      End::decode(byte_span("{\"note\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[\",\"sequences\":0,"
                            "\"queued\":0,\"kv_chunks\":0,\"kv_bytes\":0}"));
  EXPECT_TRUE(e.ok()) << e.status().to_string();
}

TEST(SnapshotPayloads, EncodeNamesAStringThatIsNotUtf8) {
  SequenceState s = sample_sequence("seq-a", 7);
  s.stop.stop.push_back("ok");
  s.stop.stop.push_back("bad\xc3(");
  expect_error(s.encode().status(), StatusCode::kInvalidArgument, "field 'stop.stop[3]' is not valid UTF-8");
  s = sample_sequence("seq-a", 7);
  s.params["name"] = std::string("\xed\xa0\x80");  // a UTF-16 surrogate, not UTF-8
  expect_error(s.encode().status(), StatusCode::kInvalidArgument, "field 'params'");
  Manifest m = sample_manifest();
  m.source = "\xc0\xaf";  // overlong '/'
  expect_error(m.encode().status(), StatusCode::kInvalidArgument, "field 'source' is not valid UTF-8");
}

TEST(SnapshotPayloads, Base64RoundTripsAndRefusesNonCanonicalText) {
  for (size_t n = 0; n < 40; ++n) {
    std::string bytes;
    for (size_t i = 0; i < n; ++i) bytes += static_cast<char>(i * 37 + 11);
    auto back = base64_decode(base64_encode(byte_span(bytes)));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(base64_encode(byte_span("foobar")), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(byte_span("fo")), "Zm8=");
  EXPECT_FALSE(base64_decode("Zm9=").ok());  // non-zero bits under the padding
  EXPECT_FALSE(base64_decode("Zm=v").ok());  // padding inside
  EXPECT_FALSE(base64_decode("Zm8=Zm8=").ok());
  EXPECT_FALSE(base64_decode("Zm-v").ok());  // URL alphabet
  EXPECT_FALSE(base64_decode("Zm8").ok());
}

}  // namespace
}  // namespace hotswap::migration
