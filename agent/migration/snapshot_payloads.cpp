#include "agent/migration/snapshot_payloads.h"
#include "agent/migration/little_endian.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace hotswap::migration {
namespace {

using nlohmann::json;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF (what nlohmann's dump
// accepts; checking first lets the error name the field).
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= static_cast<size_t>(extra)) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

Status check_utf8(std::string_view value, const std::string& field) {
  if (is_valid_utf8(value)) return Status::ok_status();
  return invalid_argument("field '" + field + "' is not valid UTF-8");
}

const char* json_type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a fractional number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  if (v.is_null()) return "null";
  return "a value of another type";
}

// The deepest nesting of arrays and objects, without building anything: hostile input must not
// make the parser build (or later free, recursively) a deep tree.
bool nesting_within(std::span<const uint8_t> text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const uint8_t c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // an unmatched closer is a syntax error the parser reports
    }
  }
  return true;
}

StatusOr<json> parse_object(std::span<const uint8_t> payload) {
  if (!nesting_within(payload, kMaxJsonDepth)) {
    return invalid_argument("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json j;
  try {
    j = json::parse(payload.begin(), payload.end());
  } catch (const json::exception& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at ..." → "parse error at ..."
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    return invalid_argument("payload is not JSON: " + what);
  }
  if (!j.is_object())
    return invalid_argument(std::string("payload is ") + json_type_name(j) + ", expected a JSON object");
  return j;
}

// Strict access to an object's fields, with the path of each field in the messages.
class Fields {
 public:
  Fields(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  std::string path(const char* key) const { return prefix_ + key; }

  StatusOr<const json*> get(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end()) return invalid_argument("field '" + path(key) + "' is missing");
    return &*it;
  }

  Status string(const char* key, std::string* out, bool non_empty, size_t max_bytes = SIZE_MAX) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_string()) return wrong_type(key, *v, "a string");
    const auto& s = v->get_ref<const std::string&>();
    if (non_empty && s.empty()) return invalid_argument("field '" + path(key) + "' is empty");
    if (s.size() > max_bytes) {
      return invalid_argument("field '" + path(key) + "' is " + std::to_string(s.size()) + " bytes, more than " +
                              std::to_string(max_bytes));
    }
    *out = s;
    return Status::ok_status();
  }

  Status int64(const char* key, int64_t lo, int64_t hi, int64_t* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    return integer_in(*v, path(key), lo, hi, out);
  }

  Status int32(const char* key, int32_t lo, int32_t hi, int32_t* out) const {
    int64_t v;
    HOTSWAP_RETURN_IF_ERROR(int64(key, lo, hi, &v));
    *out = static_cast<int32_t>(v);
    return Status::ok_status();
  }

  Status uint64(const char* key, uint64_t* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (v->is_number_unsigned()) {
      *out = v->get<uint64_t>();
      return Status::ok_status();
    }
    if (v->is_number_integer()) {
      return invalid_argument("field '" + path(key) + "' is " + std::to_string(v->get<int64_t>()) +
                              ", expected an unsigned 64-bit integer");
    }
    return wrong_type(key, *v, "an unsigned 64-bit integer");
  }

  // A finite number in [lo, hi], or (lo, hi] when lo_open.
  Status number(const char* key, double lo, bool lo_open, double hi, double* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_number()) return wrong_type(key, *v, "a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || (lo_open && d == lo) || d > hi) {
      return invalid_argument("field '" + path(key) + "' is " + v->dump() + ", outside " + (lo_open ? "(" : "[") +
                              json(lo).dump() + ", " + json(hi).dump() + "]");
    }
    *out = d;
    return Status::ok_status();
  }

  Status boolean(const char* key, bool* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_boolean()) return wrong_type(key, *v, "a boolean");
    *out = v->get<bool>();
    return Status::ok_status();
  }

  StatusOr<const json*> object(const char* key) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_object()) return wrong_type(key, *v, "an object");
    return v;
  }

  Status int32_array(const char* key, int32_t lo, std::vector<int32_t>* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_array()) return wrong_type(key, *v, "an array of integers");
    out->clear();
    out->reserve(v->size());
    for (size_t i = 0; i < v->size(); ++i) {
      int64_t x;
      HOTSWAP_RETURN_IF_ERROR(
          integer_in((*v)[i], path(key) + "[" + std::to_string(i) + "]", lo, std::numeric_limits<int32_t>::max(), &x));
      out->push_back(static_cast<int32_t>(x));
    }
    return Status::ok_status();
  }

  Status string_array(const char* key, std::vector<std::string>* out) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* v, get(key));
    if (!v->is_array()) return wrong_type(key, *v, "an array of strings");
    out->clear();
    out->reserve(v->size());
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      if (!e.is_string()) {
        return invalid_argument("field '" + path(key) + "[" + std::to_string(i) + "]' is " + json_type_name(e) +
                                ", expected a string");
      }
      out->push_back(e.get<std::string>());
    }
    return Status::ok_status();
  }

 private:
  Status wrong_type(const char* key, const json& v, const char* expected) const {
    return invalid_argument("field '" + path(key) + "' is " + json_type_name(v) + ", expected " + expected);
  }

  static Status integer_in(const json& v, const std::string& path, int64_t lo, int64_t hi, int64_t* out) {
    if (!v.is_number_integer()) {
      return invalid_argument("field '" + path + "' is " + json_type_name(v) + ", expected an integer");
    }
    const bool representable = !v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(kInt64Max);
    if (!representable || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
      return invalid_argument("field '" + path + "' is " + v.dump() + ", outside [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
    }
    *out = v.get<int64_t>();
    return Status::ok_status();
  }

  const json& object_;
  std::string prefix_;
};

std::vector<uint8_t> dump_bytes(const json& j) {
  const std::string s = j.dump();
  return {s.begin(), s.end()};
}

// The dtype spellings of the format are exactly dtype_name()'s: "F32", "F16", "BF16".
Status dtype_field(const Fields& f, const char* key, kernels::DType* out) {
  std::string name;
  HOTSWAP_RETURN_IF_ERROR(f.string(key, &name, true));
  auto t = kernels::parse_dtype(name);
  if (!t || name != kernels::dtype_name(*t)) {
    return invalid_argument("field '" + f.path(key) + "' is \"" + name + "\", expected \"F32\", \"F16\" or \"BF16\"");
  }
  *out = *t;
  return Status::ok_status();
}

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

// Caps on the layout's fields: large enough for any model, small enough that block_bytes()
// cannot overflow (2^12 * 2 * 2^12 * 2^16 * 2^16 * 4 < 2^63).
constexpr int kMaxLayers = 4096;
constexpr int kMaxKvHeads = 4096;
constexpr int kMaxHeadDim = 65536;
constexpr int kMaxBlockSize = 65536;

Status check_kv_blocks_fields(const KvBlocks& b) {
  if (b.request_id.empty()) return invalid_argument("request id is empty");
  if (b.request_id.size() > kMaxRequestIdBytes) {
    return invalid_argument("request id is " + std::to_string(b.request_id.size()) + " bytes, more than " +
                            std::to_string(kMaxRequestIdBytes));
  }
  if (b.first_block < 0) return invalid_argument("first block " + std::to_string(b.first_block) + " is negative");
  if (b.count < 1) return invalid_argument("block count " + std::to_string(b.count) + ", expected at least 1");
  if (b.first_block > kInt64Max - b.count) {
    return invalid_argument("blocks " + std::to_string(b.first_block) + " + " + std::to_string(b.count) +
                            " overflow a 64-bit index");
  }
  if (b.round < 0) return invalid_argument("round " + std::to_string(b.round) + " is negative");
  if (b.block_bytes < 1) return invalid_argument("block size in bytes is 0");
  if (static_cast<uint64_t>(b.count) > std::numeric_limits<uint64_t>::max() / b.block_bytes) {
    return invalid_argument(std::to_string(b.count) + " blocks of " + std::to_string(b.block_bytes) +
                            " bytes overflow a 64-bit size");
  }
  return Status::ok_status();
}

}  // namespace

// ---- Manifest ----

StatusOr<std::vector<uint8_t>> Manifest::encode() const {
  HOTSWAP_RETURN_IF_ERROR(check_utf8(migration_id, "migration_id"));
  HOTSWAP_RETURN_IF_ERROR(check_utf8(source, "source"));
  HOTSWAP_RETURN_IF_ERROR(check_utf8(model_digest, "model_digest"));
  HOTSWAP_RETURN_IF_ERROR(check_utf8(architecture, "architecture"));
  json j = {
      {"migration_id", migration_id},
      {"source", source},
      {"model_digest", model_digest},
      {"architecture", architecture},
      {"weight_dtype", kernels::dtype_name(weight_dtype)},
      {"kv_layout",
       {{"n_layers", kv_layout.n_layers},
        {"n_kv_heads", kv_layout.n_kv_heads},
        {"head_dim", kv_layout.head_dim},
        {"block_size", kv_layout.block_size},
        {"dtype", kernels::dtype_name(kv_layout.dtype)}}},
      {"created_unix_ms", created_unix_ms},
  };
  if (recompute_only) j["recompute_only"] = true;
  return dump_bytes(j);
}

StatusOr<Manifest> Manifest::decode(std::span<const uint8_t> payload) {
  HOTSWAP_ASSIGN_OR_RETURN(json j, parse_object(payload));
  Fields f(j, "");
  Manifest m;
  HOTSWAP_RETURN_IF_ERROR(f.string("migration_id", &m.migration_id, true));
  HOTSWAP_RETURN_IF_ERROR(f.string("source", &m.source, true));
  HOTSWAP_RETURN_IF_ERROR(f.string("model_digest", &m.model_digest, true));
  if (!is_hex(m.model_digest)) {
    return invalid_argument("field 'model_digest' is \"" + m.model_digest + "\", expected hex digits");
  }
  HOTSWAP_RETURN_IF_ERROR(f.string("architecture", &m.architecture, true));
  HOTSWAP_RETURN_IF_ERROR(dtype_field(f, "weight_dtype", &m.weight_dtype));
  HOTSWAP_ASSIGN_OR_RETURN(const json* layout, f.object("kv_layout"));
  Fields l(*layout, "kv_layout.");
  HOTSWAP_RETURN_IF_ERROR(l.int32("n_layers", 1, kMaxLayers, &m.kv_layout.n_layers));
  HOTSWAP_RETURN_IF_ERROR(l.int32("n_kv_heads", 1, kMaxKvHeads, &m.kv_layout.n_kv_heads));
  HOTSWAP_RETURN_IF_ERROR(l.int32("head_dim", 1, kMaxHeadDim, &m.kv_layout.head_dim));
  HOTSWAP_RETURN_IF_ERROR(l.int32("block_size", 1, kMaxBlockSize, &m.kv_layout.block_size));
  HOTSWAP_RETURN_IF_ERROR(dtype_field(l, "dtype", &m.kv_layout.dtype));
  const uint64_t largest_chunk = m.kv_layout.block_bytes() + kv_blocks_header_bytes(kMaxRequestIdBytes);
  if (largest_chunk > kMaxChunkPayloadBytes) {
    return invalid_argument("field 'kv_layout' has blocks of " + std::to_string(m.kv_layout.block_bytes()) +
                            " bytes; one block must fit in a " + std::to_string(kMaxChunkPayloadBytes) +
                            "-byte chunk payload");
  }
  HOTSWAP_RETURN_IF_ERROR(f.int64("created_unix_ms", 0, kInt64Max, &m.created_unix_ms));
  if (j.contains("recompute_only")) {
    if (!j["recompute_only"].is_boolean())
      return invalid_argument("field 'recompute_only' is " + j["recompute_only"].dump() + ", expected a boolean");
    m.recompute_only = j["recompute_only"].get<bool>();
  }
  return m;
}

// ---- SequenceState ----

StatusOr<std::vector<uint8_t>> SequenceState::encode() const {
  HOTSWAP_RETURN_IF_ERROR(check_utf8(request_id, "request_id"));
  for (size_t i = 0; i < stop.stop.size(); ++i) {
    HOTSWAP_RETURN_IF_ERROR(check_utf8(stop.stop[i], "stop.stop[" + std::to_string(i) + "]"));
  }
  if (!params.is_object()) {
    return invalid_argument(std::string("field 'params' is ") + json_type_name(params) + ", expected an object");
  }
  json j = {
      {"request_id", request_id},
      {"prompt", prompt},
      {"generated", generated},
      {"position", position},
      {"sampling",
       {{"temperature", sampling.temperature},
        {"top_p", sampling.top_p},
        {"top_k", sampling.top_k},
        {"seed", sampling.seed}}},
      {"stop",
       {{"max_tokens", stop.max_tokens},
        {"stop", stop.stop},
        {"stop_token_ids", stop.stop_token_ids},
        {"ignore_eos", stop.ignore_eos}}},
      {"stream",
       {{"last_event_id", stream.last_event_id},
        {"text_emitted_bytes", stream.text_emitted_bytes},
        {"text_bytes_base64", base64_encode(byte_span(stream.text_bytes))}}},
      {"params", params},
      {"kv_blocks", kv_blocks},
  };
  if (finished) {
    if (position != 0 || kv_blocks != 0)
      return invalid_argument("a finished SequenceState carries no KV: position and kv_blocks must be 0");
    j["finished"] = true;
  }
  try {
    return dump_bytes(j);
  } catch (const json::type_error& e) {
    // Only params can hold a string not checked above.
    return invalid_argument(std::string("field 'params' holds a string that is not valid UTF-8 (") + e.what() + ")");
  }
}

StatusOr<SequenceState> SequenceState::decode(std::span<const uint8_t> payload) {
  HOTSWAP_ASSIGN_OR_RETURN(json j, parse_object(payload));
  Fields f(j, "");
  SequenceState s;
  HOTSWAP_RETURN_IF_ERROR(f.string("request_id", &s.request_id, true, kMaxRequestIdBytes));
  HOTSWAP_RETURN_IF_ERROR(f.int32_array("prompt", 0, &s.prompt));
  if (s.prompt.empty()) return invalid_argument("field 'prompt' is empty");
  HOTSWAP_RETURN_IF_ERROR(f.int32_array("generated", 0, &s.generated));
  const auto tokens = static_cast<int64_t>(s.prompt.size() + s.generated.size());
  HOTSWAP_RETURN_IF_ERROR(f.int64("position", 0, tokens, &s.position));

  HOTSWAP_ASSIGN_OR_RETURN(const json* sampling, f.object("sampling"));
  Fields sf(*sampling, "sampling.");
  HOTSWAP_RETURN_IF_ERROR(
      sf.number("temperature", 0.0, false, std::numeric_limits<double>::max(), &s.sampling.temperature));
  HOTSWAP_RETURN_IF_ERROR(sf.number("top_p", 0.0, true, 1.0, &s.sampling.top_p));
  HOTSWAP_RETURN_IF_ERROR(sf.int32("top_k", 0, kInt32Max, &s.sampling.top_k));
  HOTSWAP_RETURN_IF_ERROR(sf.uint64("seed", &s.sampling.seed));

  HOTSWAP_ASSIGN_OR_RETURN(const json* stop, f.object("stop"));
  Fields tf(*stop, "stop.");
  HOTSWAP_RETURN_IF_ERROR(tf.int32("max_tokens", 1, kInt32Max, &s.stop.max_tokens));
  if (static_cast<int64_t>(s.generated.size()) > s.stop.max_tokens) {
    return invalid_argument("field 'generated' holds " + std::to_string(s.generated.size()) +
                            " tokens, more than stop.max_tokens " + std::to_string(s.stop.max_tokens));
  }
  HOTSWAP_RETURN_IF_ERROR(tf.string_array("stop", &s.stop.stop));
  HOTSWAP_RETURN_IF_ERROR(tf.int32_array("stop_token_ids", 0, &s.stop.stop_token_ids));
  HOTSWAP_RETURN_IF_ERROR(tf.boolean("ignore_eos", &s.stop.ignore_eos));

  HOTSWAP_ASSIGN_OR_RETURN(const json* stream, f.object("stream"));
  Fields cf(*stream, "stream.");
  HOTSWAP_RETURN_IF_ERROR(cf.int64("last_event_id", -1, kInt64Max, &s.stream.last_event_id));
  std::string text_base64;
  HOTSWAP_RETURN_IF_ERROR(cf.string("text_bytes_base64", &text_base64, false));
  auto text = base64_decode(text_base64);
  if (!text.ok()) return text.status().with_context("field 'stream.text_bytes_base64'");
  s.stream.text_bytes = std::move(text).value();
  HOTSWAP_RETURN_IF_ERROR(cf.int64("text_emitted_bytes", 0, static_cast<int64_t>(s.stream.text_bytes.size()),
                                   &s.stream.text_emitted_bytes));

  HOTSWAP_ASSIGN_OR_RETURN(const json* params, f.object("params"));
  s.params = *params;
  // A block holds at least one position, so a sequence has at most `position` blocks; the
  // decoder checks the exact count against the manifest's block size.
  HOTSWAP_RETURN_IF_ERROR(f.int64("kv_blocks", 0, s.position, &s.kv_blocks));
  if (j.contains("finished")) {
    HOTSWAP_RETURN_IF_ERROR(f.boolean("finished", &s.finished));
    if (s.finished && (s.position != 0 || s.kv_blocks != 0))
      return invalid_argument("field 'finished' is true, but position " + std::to_string(s.position) +
                              " and kv_blocks " + std::to_string(s.kv_blocks) + " are not 0");
  }
  return s;
}

// ---- KvBlocks ----
//
// Sub-header, little-endian:
//   0  u32 header_bytes      (kKvBlocksFixedBytes + request_id bytes, rounded up to 16)
//   4  u32 request_id_bytes  (1..kMaxRequestIdBytes)
//   8  i64 first_block
//   16 i64 count
//   24 i64 round
//   32 u64 block_bytes
//   40 request_id, then zero bytes up to header_bytes
// then count * block_bytes bytes of blocks.

size_t kv_blocks_header_bytes(size_t request_id_bytes) {
  return (kKvBlocksFixedBytes + request_id_bytes + 15) & ~size_t{15};
}

StatusOr<std::vector<uint8_t>> encode_kv_blocks_header(const KvBlocks& b) {
  HOTSWAP_RETURN_IF_ERROR(check_kv_blocks_fields(b));
  std::vector<uint8_t> out(kv_blocks_header_bytes(b.request_id.size()), 0);
  put_le32(out.data(), static_cast<uint32_t>(out.size()));
  put_le32(out.data() + 4, static_cast<uint32_t>(b.request_id.size()));
  put_le64(out.data() + 8, static_cast<uint64_t>(b.first_block));
  put_le64(out.data() + 16, static_cast<uint64_t>(b.count));
  put_le64(out.data() + 24, static_cast<uint64_t>(b.round));
  put_le64(out.data() + 32, b.block_bytes);
  std::memcpy(out.data() + kKvBlocksFixedBytes, b.request_id.data(), b.request_id.size());
  return out;
}

StatusOr<std::vector<uint8_t>> KvBlocks::encode() const {
  HOTSWAP_ASSIGN_OR_RETURN(std::vector<uint8_t> out, encode_kv_blocks_header(*this));
  const uint64_t expected = static_cast<uint64_t>(count) * block_bytes;
  if (data.size() != expected) {
    return invalid_argument("data is " + std::to_string(data.size()) + " bytes, " + std::to_string(count) +
                            " blocks of " + std::to_string(block_bytes) + " bytes are " + std::to_string(expected));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

StatusOr<KvBlocks> KvBlocks::decode(std::span<const uint8_t> payload) {
  if (payload.size() < kKvBlocksFixedBytes) {
    return invalid_argument("payload is " + std::to_string(payload.size()) + " bytes, shorter than the " +
                            std::to_string(kKvBlocksFixedBytes) + "-byte sub-header");
  }
  const uint8_t* p = payload.data();
  const uint32_t header_bytes = get_le32(p);
  const uint32_t id_bytes = get_le32(p + 4);
  if (id_bytes < 1 || id_bytes > kMaxRequestIdBytes) {
    return invalid_argument("request id length " + std::to_string(id_bytes) + ", expected 1.." +
                            std::to_string(kMaxRequestIdBytes));
  }
  if (header_bytes != kv_blocks_header_bytes(id_bytes)) {
    return invalid_argument("sub-header length " + std::to_string(header_bytes) + ", expected " +
                            std::to_string(kv_blocks_header_bytes(id_bytes)) + " for a " + std::to_string(id_bytes) +
                            "-byte request id");
  }
  if (payload.size() < header_bytes) {
    return invalid_argument("payload is " + std::to_string(payload.size()) + " bytes, shorter than its " +
                            std::to_string(header_bytes) + "-byte sub-header");
  }
  for (size_t i = kKvBlocksFixedBytes + id_bytes; i < header_bytes; ++i) {
    if (p[i] != 0) return invalid_argument("sub-header padding byte " + std::to_string(i) + " is not zero");
  }
  KvBlocks b;
  b.request_id.assign(reinterpret_cast<const char*>(p + kKvBlocksFixedBytes), id_bytes);
  b.first_block = static_cast<int64_t>(get_le64(p + 8));
  b.count = static_cast<int64_t>(get_le64(p + 16));
  b.round = static_cast<int64_t>(get_le64(p + 24));
  b.block_bytes = get_le64(p + 32);
  HOTSWAP_RETURN_IF_ERROR(check_kv_blocks_fields(b));
  const uint64_t data_bytes = payload.size() - header_bytes;
  if (data_bytes != static_cast<uint64_t>(b.count) * b.block_bytes) {
    return invalid_argument("payload carries " + std::to_string(data_bytes) + " block bytes, " +
                            std::to_string(b.count) + " blocks of " + std::to_string(b.block_bytes) + " bytes are " +
                            std::to_string(static_cast<uint64_t>(b.count) * b.block_bytes));
  }
  b.data = payload.subspan(header_bytes);
  return b;
}

// ---- End ----

std::vector<uint8_t> End::encode() const {
  return dump_bytes(
      json{{"sequences", sequences}, {"queued", queued}, {"kv_chunks", kv_chunks}, {"kv_bytes", kv_bytes}});
}

StatusOr<End> End::decode(std::span<const uint8_t> payload) {
  HOTSWAP_ASSIGN_OR_RETURN(json j, parse_object(payload));
  Fields f(j, "");
  End e;
  HOTSWAP_RETURN_IF_ERROR(f.int64("sequences", 0, kInt64Max, &e.sequences));
  HOTSWAP_RETURN_IF_ERROR(f.int64("queued", 0, kInt64Max, &e.queued));
  HOTSWAP_RETURN_IF_ERROR(f.int64("kv_chunks", 0, kInt64Max, &e.kv_chunks));
  HOTSWAP_RETURN_IF_ERROR(f.int64("kv_bytes", 0, kInt64Max, &e.kv_bytes));
  return e;
}

// ---- base64 ----

namespace {
constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
    out += kBase64Alphabet[v >> 18];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += kBase64Alphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{bytes[i]} << 16;
    if (rest == 2) v |= uint32_t{bytes[i + 1]} << 8;
    out += kBase64Alphabet[v >> 18];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

StatusOr<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return invalid_argument("base64 text is " + std::to_string(text.size()) + " characters, not a multiple of 4");
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      int d = k >= 4 - pad ? 0 : base64_value(c);
      if (d < 0) return invalid_argument("base64 text has '" + std::string(1, c) + "' at " + std::to_string(i + k));
      v = v << 6 | static_cast<uint32_t>(d);
    }
    // Padding leaves bits that a canonical encoder sets to zero.
    if ((pad == 1 && (v & 0xFF) != 0) || (pad == 2 && (v & 0xFFFF) != 0)) {
      return invalid_argument("base64 text has non-zero bits under its padding");
    }
    out += static_cast<char>(v >> 16);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(v & 0xFF);
  }
  return out;
}

}  // namespace hotswap::migration
