// Reads a Hugging Face tokenizer.json (and tokenizer_config.json) into a TokenizerState,
// checking every field it uses; see tokenizer.h for the supported subset.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "agent/engine/byte_level.h"
#include "agent/engine/tokenizer_state.h"

namespace hotswap::engine::tokenizer_detail {

using nlohmann::json;

namespace {

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------------
// Reading tokenizer.json fields with errors that name the file and the field.

std::string join_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string index_path(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// A value for an error message: compact, invalid UTF-8 replaced, long values cut.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() <= 60 ? s : s.substr(0, 57) + "...";
}

class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  Status malformed(const std::string& field, const std::string& what) const {
    return data_loss(source_ + ": " + field + " " + what);
  }
  Status unsupported(const std::string& what) const { return unimplemented(source_ + ": " + what); }

  Status expect_object(const json& j, const std::string& field) const {
    if (!j.is_object()) return malformed(field, std::string("must be an object (got ") + j.type_name() + ")");
    return Status();
  }
  // The member `key` of object `obj` at `path`, or nullptr when absent or null.
  const json* optional(const json& obj, const std::string& path, std::string_view key) const {
    auto it = obj.find(std::string(key));
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }
  StatusOr<const json*> required(const json& obj, const std::string& path, std::string_view key) const {
    const json* j = optional(obj, path, key);
    if (j == nullptr) return malformed(join_path(path, key), "is missing");
    return j;
  }
  StatusOr<std::string> string_field(const json& obj, const std::string& path, std::string_view key) const {
    HOTSWAP_ASSIGN_OR_RETURN(const json* j, required(obj, path, key));
    if (!j->is_string()) return type_error(*j, join_path(path, key), "a string");
    return j->get<std::string>();
  }
  StatusOr<bool> bool_field(const json& obj, const std::string& path, std::string_view key, bool fallback) const {
    const json* j = optional(obj, path, key);
    if (j == nullptr) return fallback;
    if (!j->is_boolean()) return type_error(*j, join_path(path, key), "a boolean");
    return j->get<bool>();
  }
  StatusOr<int32_t> id_value(const json& j, const std::string& field) const {
    if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() >= kMaxTokenId) {
      return malformed(
          field, "must be a token id, an integer in [0, " + std::to_string(kMaxTokenId) + ") (got " + brief(j) + ")");
    }
    return static_cast<int32_t>(j.get<int64_t>());
  }
  Status type_error(const json& j, const std::string& field, const std::string& expected) const {
    return malformed(field, "must be " + expected + " (got " + j.type_name() + ")");
  }
  // The "type" of a component object, e.g. pre_tokenizer.type.
  StatusOr<std::string> component_type(const json& j, const std::string& path) const {
    HOTSWAP_RETURN_IF_ERROR(expect_object(j, path));
    return string_field(j, path, "type");
  }

 private:
  std::string source_;
};

StatusOr<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return data_loss(path + ": read error");
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// Loading.

Status load_model(const JsonReader& r, const json& root, TokenizerState& st) {
  HOTSWAP_ASSIGN_OR_RETURN(const json* model, r.required(root, "", "model"));
  HOTSWAP_RETURN_IF_ERROR(r.expect_object(*model, "model"));
  if (const json* type = r.optional(*model, "model", "type")) {
    if (!type->is_string()) return r.type_error(*type, "model.type", "a string");
    if (type->get<std::string>() != "BPE") {
      return r.unsupported("unsupported model.type '" + type->get<std::string>() + "' (only BPE is supported)");
    }
  } else if (!model->contains("merges")) {
    return r.malformed("model.type", "is missing");
  }
  HOTSWAP_ASSIGN_OR_RETURN(st.ignore_merges, r.bool_field(*model, "model", "ignore_merges", false));
  HOTSWAP_ASSIGN_OR_RETURN(bool byte_fallback, r.bool_field(*model, "model", "byte_fallback", false));
  if (byte_fallback) return r.unsupported("model.byte_fallback true is not supported (byte-level BPE only)");
  if (const json* dropout = r.optional(*model, "model", "dropout")) {
    if (!dropout->is_number()) return r.type_error(*dropout, "model.dropout", "a number or null");
    if (dropout->get<double>() != 0.0)
      return r.unsupported("model.dropout is not supported (encoding must be deterministic)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* j = r.optional(*model, "model", key)) {
      if (!j->is_string()) return r.type_error(*j, join_path("model", key), "a string or null");
      if (!j->get<std::string>().empty()) return r.unsupported("model." + std::string(key) + " is not supported");
    }
  }

  HOTSWAP_ASSIGN_OR_RETURN(const json* vocab, r.required(*model, "model", "vocab"));
  HOTSWAP_RETURN_IF_ERROR(r.expect_object(*vocab, "model.vocab"));
  int32_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    HOTSWAP_ASSIGN_OR_RETURN(int32_t id, r.id_value(it.value(), "model.vocab['" + it.key() + "']"));
    st.vocab.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  st.token_of_id.assign(static_cast<size_t>(max_id + 1), std::string());
  st.kind_of_id.assign(static_cast<size_t>(max_id + 1), kNoToken);
  for (const auto& [token, id] : st.vocab) {
    if (st.kind_of_id[id] != kNoToken) {
      const auto& a = std::min(token, st.token_of_id[id]);
      const auto& b = std::max(token, st.token_of_id[id]);
      return r.malformed("model.vocab", "gives id " + std::to_string(id) + " to both '" + a + "' and '" + b + "'");
    }
    st.token_of_id[id] = token;
    st.kind_of_id[id] = kModelToken;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = st.vocab.find(byte_level_char(static_cast<uint8_t>(b)));
    if (it == st.vocab.end()) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", b);
      return r.malformed("model.vocab", "lacks the byte-level token '" + byte_level_char(static_cast<uint8_t>(b)) +
                                            "' for byte " + hex + " (a byte-level BPE needs all 256)");
    }
    st.byte_token_id[b] = it->second;
  }

  HOTSWAP_ASSIGN_OR_RETURN(const json* merges, r.required(*model, "model", "merges"));
  if (!merges->is_array()) return r.type_error(*merges, "model.merges", "an array");
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    const std::string field = index_path("model.merges", i);
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) return r.malformed(field, "'" + s + "' must be two tokens separated by a space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return r.malformed(field, "must be a string \"a b\" or an array of two strings (got " + brief(m) + ")");
    }
    int32_t ids[3];
    const std::string parts[3] = {left, right, left + right};
    for (int k = 0; k < 3; ++k) {
      auto it = st.vocab.find(parts[k]);
      if (it == st.vocab.end()) return r.malformed(field, "refers to token '" + parts[k] + "' not in vocab");
      ids[k] = it->second;
    }
    // A repeated pair keeps its last rank, as HF's map insertion does.
    const uint64_t key = (static_cast<uint64_t>(ids[0]) << 32) | static_cast<uint32_t>(ids[1]);
    st.merges[key] = {static_cast<uint32_t>(i), ids[2]};
  }
  return Status();
}

Status load_added_tokens(const JsonReader& r, const json& root, TokenizerState& st) {
  const json* added = r.optional(root, "", "added_tokens");
  if (added == nullptr) return Status();
  if (!added->is_array()) return r.type_error(*added, "added_tokens", "an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const json& a = (*added)[i];
    const std::string path = index_path("added_tokens", i);
    HOTSWAP_RETURN_IF_ERROR(r.expect_object(a, path));
    AddedToken tok;
    HOTSWAP_ASSIGN_OR_RETURN(const json* id, r.required(a, path, "id"));
    HOTSWAP_ASSIGN_OR_RETURN(tok.id, r.id_value(*id, join_path(path, "id")));
    HOTSWAP_ASSIGN_OR_RETURN(tok.content, r.string_field(a, path, "content"));
    if (tok.content.empty()) return r.malformed(join_path(path, "content"), "must not be empty");
    HOTSWAP_ASSIGN_OR_RETURN(tok.special, r.bool_field(a, path, "special", false));
    HOTSWAP_ASSIGN_OR_RETURN(tok.lstrip, r.bool_field(a, path, "lstrip", false));
    HOTSWAP_ASSIGN_OR_RETURN(tok.rstrip, r.bool_field(a, path, "rstrip", false));
    HOTSWAP_ASSIGN_OR_RETURN(tok.single_word, r.bool_field(a, path, "single_word", false));
    HOTSWAP_ASSIGN_OR_RETURN(tok.normalized, r.bool_field(a, path, "normalized", !tok.special));

    // HF gives an added token the vocabulary's id when its content is in the vocabulary and a
    // fresh id otherwise; a file whose ids disagree with that is corrupt.
    auto in_vocab = st.vocab.find(tok.content);
    if (in_vocab != st.vocab.end() && in_vocab->second != tok.id) {
      return r.malformed(path, "'" + tok.content + "' has id " + std::to_string(tok.id) +
                                   " but model.vocab gives it id " + std::to_string(in_vocab->second));
    }
    if (static_cast<size_t>(tok.id) >= st.kind_of_id.size()) {
      st.kind_of_id.resize(tok.id + 1, kNoToken);
      st.token_of_id.resize(tok.id + 1);
    }
    if (in_vocab == st.vocab.end() && st.kind_of_id[tok.id] == kModelToken) {
      return r.malformed(join_path(path, "id"), std::to_string(tok.id) + " of '" + tok.content +
                                                    "' is already model.vocab's '" + st.token_of_id[tok.id] + "'");
    }
    if (st.kind_of_id[tok.id] == kAddedToken || st.kind_of_id[tok.id] == kSpecialToken) {
      return r.malformed(join_path(path, "id"), std::to_string(tok.id) + " is given to two added tokens");
    }
    if (!st.added_ids.emplace(tok.content, tok.id).second) {
      return r.malformed(join_path(path, "content"), "'" + tok.content + "' appears twice in added_tokens");
    }
    st.token_of_id[tok.id] = tok.content;
    st.kind_of_id[tok.id] = tok.special ? kSpecialToken : kAddedToken;
    st.added.push_back(std::move(tok));
  }
  for (int32_t i = 0; i < static_cast<int32_t>(st.added.size()); ++i) {
    AddedTokenMatcher& m = st.added[i].normalized ? st.normalized_matcher : st.raw_matcher;
    m.by_first_byte[static_cast<unsigned char>(st.added[i].content[0])].push_back(i);
    m.empty = false;
  }
  for (AddedTokenMatcher* m : {&st.raw_matcher, &st.normalized_matcher}) {
    for (auto& bucket : m->by_first_byte) {
      std::stable_sort(bucket.begin(), bucket.end(),
                       [&](int32_t a, int32_t b) { return st.added[a].content.size() > st.added[b].content.size(); });
    }
  }
  return Status();
}

// NFC is accepted and treated as the identity: this engine has no Unicode normalization tables,
// and the byte-level vocabularies that declare NFC (Qwen2) are trained on text that is already
// NFC, so only non-NFC input (e.g. decomposed accents) can encode differently from HF.
Status check_normalizer(const JsonReader& r, const json& n, const std::string& path) {
  if (n.is_null()) return Status();
  HOTSWAP_ASSIGN_OR_RETURN(std::string type, r.component_type(n, path));
  if (type == "NFC") return Status();
  if (type == "Sequence") {
    HOTSWAP_ASSIGN_OR_RETURN(const json* list, r.required(n, path, "normalizers"));
    if (!list->is_array()) return r.type_error(*list, join_path(path, "normalizers"), "an array");
    for (size_t i = 0; i < list->size(); ++i) {
      HOTSWAP_RETURN_IF_ERROR(check_normalizer(r, (*list)[i], index_path(join_path(path, "normalizers"), i)));
    }
    return Status();
  }
  return r.unsupported("unsupported " + path + ".type '" + type + "' (supported: null, NFC, Sequence)");
}

StatusOr<Pcre2Regex> compile_regex(const JsonReader& r, const std::string& pattern, const std::string& field) {
  auto regex = Pcre2Regex::compile(pattern);
  if (!regex.ok()) return r.malformed(field, "'" + pattern + "': " + regex.status().message());
  return std::move(regex).value();
}

Status load_pre_tokenizer(const JsonReader& r, const json& p, const std::string& path,
                          std::vector<PreTokenizerStep>& steps) {
  if (p.is_null()) return Status();
  HOTSWAP_ASSIGN_OR_RETURN(std::string type, r.component_type(p, path));
  if (type == "Sequence") {
    HOTSWAP_ASSIGN_OR_RETURN(const json* list, r.required(p, path, "pretokenizers"));
    if (!list->is_array()) return r.type_error(*list, join_path(path, "pretokenizers"), "an array");
    for (size_t i = 0; i < list->size(); ++i) {
      HOTSWAP_RETURN_IF_ERROR(
          load_pre_tokenizer(r, (*list)[i], index_path(join_path(path, "pretokenizers"), i), steps));
    }
    return Status();
  }
  PreTokenizerStep step;
  if (type == "ByteLevel") {
    step.byte_level = true;
    HOTSWAP_ASSIGN_OR_RETURN(step.add_prefix_space, r.bool_field(p, path, "add_prefix_space", true));
    HOTSWAP_ASSIGN_OR_RETURN(bool use_regex, r.bool_field(p, path, "use_regex", true));
    if (use_regex) {
      HOTSWAP_ASSIGN_OR_RETURN(step.regex, compile_regex(r, kGpt2Pattern, join_path(path, "use_regex")));
    }
  } else if (type == "Split") {
    HOTSWAP_ASSIGN_OR_RETURN(const json* pattern, r.required(p, path, "pattern"));
    const std::string pattern_path = join_path(path, "pattern");
    HOTSWAP_RETURN_IF_ERROR(r.expect_object(*pattern, pattern_path));
    if (const json* regex = r.optional(*pattern, pattern_path, "Regex")) {
      if (!regex->is_string()) return r.type_error(*regex, join_path(pattern_path, "Regex"), "a string");
      HOTSWAP_ASSIGN_OR_RETURN(step.regex,
                               compile_regex(r, regex->get<std::string>(), join_path(pattern_path, "Regex")));
    } else if (const json* literal = r.optional(*pattern, pattern_path, "String")) {
      if (!literal->is_string()) return r.type_error(*literal, join_path(pattern_path, "String"), "a string");
      step.literal = literal->get<std::string>();
      if (step.literal.empty()) return r.malformed(join_path(pattern_path, "String"), "must not be empty");
    } else {
      return r.malformed(pattern_path, "must have a \"Regex\" or a \"String\" member");
    }
    HOTSWAP_ASSIGN_OR_RETURN(std::string behavior, r.string_field(p, path, "behavior"));
    static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
        {"Removed", SplitBehavior::kRemoved},
        {"Isolated", SplitBehavior::kIsolated},
        {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
        {"MergedWithNext", SplitBehavior::kMergedWithNext},
        {"Contiguous", SplitBehavior::kContiguous}};
    bool known = false;
    for (const auto& [name, value] : kBehaviors) {
      if (behavior == name) {
        step.behavior = value;
        known = true;
      }
    }
    if (!known) return r.malformed(join_path(path, "behavior"), "'" + behavior + "' is not a split behavior");
    HOTSWAP_ASSIGN_OR_RETURN(step.invert, r.bool_field(p, path, "invert", false));
  } else {
    return r.unsupported("unsupported " + path + ".type '" + type + "' (supported: ByteLevel, Split, Sequence)");
  }
  steps.push_back(std::move(step));
  return Status();
}

Status check_decoder(const JsonReader& r, const json& d, const std::string& path) {
  if (d.is_null()) return r.unsupported(path + " is null; only the ByteLevel decoder is supported");
  HOTSWAP_ASSIGN_OR_RETURN(std::string type, r.component_type(d, path));
  if (type == "ByteLevel") return Status();
  if (type == "Sequence") {
    HOTSWAP_ASSIGN_OR_RETURN(const json* list, r.required(d, path, "decoders"));
    if (!list->is_array()) return r.type_error(*list, join_path(path, "decoders"), "an array");
    if (list->empty()) return r.unsupported(path + ".decoders is empty; only the ByteLevel decoder is supported");
    for (size_t i = 0; i < list->size(); ++i) {
      HOTSWAP_RETURN_IF_ERROR(check_decoder(r, (*list)[i], index_path(join_path(path, "decoders"), i)));
    }
    return Status();
  }
  return r.unsupported("unsupported " + path + ".type '" + type + "' (supported: ByteLevel, Sequence of ByteLevel)");
}

// Post-processors reduce, for a single sequence, to ids put before and after it.
Status load_post_processor(const JsonReader& r, const json& p, const std::string& path, const TokenizerState& st,
                           std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (p.is_null()) return Status();
  HOTSWAP_ASSIGN_OR_RETURN(std::string type, r.component_type(p, path));
  if (type == "ByteLevel") return Status();  // only adjusts offsets
  if (type == "Sequence") {
    HOTSWAP_ASSIGN_OR_RETURN(const json* list, r.required(p, path, "processors"));
    if (!list->is_array()) return r.type_error(*list, join_path(path, "processors"), "an array");
    for (size_t i = 0; i < list->size(); ++i) {
      HOTSWAP_RETURN_IF_ERROR(
          load_post_processor(r, (*list)[i], index_path(join_path(path, "processors"), i), st, prefix, suffix));
    }
    return Status();
  }
  if (type != "TemplateProcessing") {
    return r.unsupported("unsupported " + path + ".type '" + type +
                         "' (supported: ByteLevel, TemplateProcessing, Sequence)");
  }
  HOTSWAP_ASSIGN_OR_RETURN(const json* specials, r.required(p, path, "special_tokens"));
  const std::string specials_path = join_path(path, "special_tokens");
  HOTSWAP_RETURN_IF_ERROR(r.expect_object(*specials, specials_path));
  HOTSWAP_ASSIGN_OR_RETURN(const json* single, r.required(p, path, "single"));
  const std::string single_path = join_path(path, "single");
  if (!single->is_array()) return r.type_error(*single, single_path, "an array");

  std::vector<int32_t> before, after;
  int sequences = 0;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    const std::string item_path = index_path(single_path, i);
    HOTSWAP_RETURN_IF_ERROR(r.expect_object(item, item_path));
    if (const json* seq = r.optional(item, item_path, "Sequence")) {
      const std::string seq_path = join_path(item_path, "Sequence");
      HOTSWAP_RETURN_IF_ERROR(r.expect_object(*seq, seq_path));
      HOTSWAP_ASSIGN_OR_RETURN(std::string id, r.string_field(*seq, seq_path, "id"));
      if (id != "A")
        return r.malformed(join_path(seq_path, "id"), "must be 'A' in a single template (got '" + id + "')");
      ++sequences;
    } else if (const json* special = r.optional(item, item_path, "SpecialToken")) {
      const std::string special_path = join_path(item_path, "SpecialToken");
      HOTSWAP_RETURN_IF_ERROR(r.expect_object(*special, special_path));
      HOTSWAP_ASSIGN_OR_RETURN(std::string name, r.string_field(*special, special_path, "id"));
      auto it = specials->find(name);
      if (it == specials->end()) {
        return r.malformed(join_path(special_path, "id"), "'" + name + "' is not in " + specials_path);
      }
      const std::string entry_path = specials_path + "['" + name + "']";
      HOTSWAP_RETURN_IF_ERROR(r.expect_object(*it, entry_path));
      HOTSWAP_ASSIGN_OR_RETURN(const json* ids, r.required(*it, entry_path, "ids"));
      if (!ids->is_array()) return r.type_error(*ids, join_path(entry_path, "ids"), "an array");
      for (size_t k = 0; k < ids->size(); ++k) {
        const std::string id_path = index_path(join_path(entry_path, "ids"), k);
        HOTSWAP_ASSIGN_OR_RETURN(int32_t id, r.id_value((*ids)[k], id_path));
        if (static_cast<size_t>(id) >= st.kind_of_id.size() || st.kind_of_id[id] == kNoToken) {
          return r.malformed(id_path, std::to_string(id) + " is not a token id of this tokenizer");
        }
        (sequences == 0 ? before : after).push_back(id);
      }
    } else {
      return r.malformed(item_path, "must have a \"Sequence\" or a \"SpecialToken\" member");
    }
  }
  if (sequences != 1) return r.malformed(single_path, "must contain the sequence 'A' exactly once");
  prefix.insert(prefix.begin(), before.begin(), before.end());
  suffix.insert(suffix.end(), after.begin(), after.end());
  return Status();
}

// bos_token / eos_token in tokenizer_config.json: a string, an AddedToken object or null.
StatusOr<std::optional<int32_t>> config_token(const JsonReader& r, const json& config, const char* key,
                                              const TokenizerState& st) {
  const json* j = r.optional(config, "", key);
  if (j == nullptr) return std::optional<int32_t>();
  std::string content;
  if (j->is_string()) {
    content = j->get<std::string>();
  } else if (j->is_object()) {
    HOTSWAP_ASSIGN_OR_RETURN(content, r.string_field(*j, key, "content"));
  } else {
    return r.type_error(*j, key, "a string, an object with \"content\" or null");
  }
  if (auto it = st.added_ids.find(content); it != st.added_ids.end()) return std::optional<int32_t>(it->second);
  if (auto it = st.vocab.find(content); it != st.vocab.end()) return std::optional<int32_t>(it->second);
  return r.malformed(key, "'" + content + "' is not a token of the tokenizer");
}

}  // namespace

StatusOr<json> read_json_file(const std::string& path) {
  HOTSWAP_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return data_loss(path + ": not valid JSON");
  return j;
}

StatusOr<std::shared_ptr<TokenizerState>> load_tokenizer_state(const json& tokenizer_json, const std::string& source,
                                                               const json* tokenizer_config,
                                                               const std::string& config_source) {
  const JsonReader r(source);
  HOTSWAP_RETURN_IF_ERROR(r.expect_object(tokenizer_json, "top level"));
  auto st = std::make_shared<TokenizerState>();
  HOTSWAP_RETURN_IF_ERROR(load_model(r, tokenizer_json, *st));
  HOTSWAP_RETURN_IF_ERROR(load_added_tokens(r, tokenizer_json, *st));

  static const json kNull;
  auto member = [&](const char* key) -> const json& {
    auto it = tokenizer_json.find(key);
    return it == tokenizer_json.end() ? kNull : *it;
  };
  HOTSWAP_RETURN_IF_ERROR(check_normalizer(r, member("normalizer"), "normalizer"));
  HOTSWAP_RETURN_IF_ERROR(load_pre_tokenizer(r, member("pre_tokenizer"), "pre_tokenizer", st->pre_tokenizer));
  if (std::none_of(st->pre_tokenizer.begin(), st->pre_tokenizer.end(), [](const auto& s) { return s.byte_level; })) {
    return r.unsupported("pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
  }
  HOTSWAP_RETURN_IF_ERROR(check_decoder(r, member("decoder"), "decoder"));
  HOTSWAP_RETURN_IF_ERROR(
      load_post_processor(r, member("post_processor"), "post_processor", *st, st->prefix_ids, st->suffix_ids));

  st->bytes_of_id.resize(st->token_of_id.size());
  for (size_t id = 0; id < st->token_of_id.size(); ++id) {
    // HF's ByteLevel decoder maps a token whose characters are all byte-level characters back
    // to bytes and passes any other token (e.g. an added "<|im_start|> \n") through as UTF-8.
    auto bytes = byte_level_decode(st->token_of_id[id]);
    st->bytes_of_id[id] = bytes ? std::move(*bytes) : st->token_of_id[id];
  }

  if (tokenizer_config != nullptr) {
    const JsonReader cr(config_source);
    HOTSWAP_RETURN_IF_ERROR(cr.expect_object(*tokenizer_config, "top level"));
    HOTSWAP_ASSIGN_OR_RETURN(st->bos, config_token(cr, *tokenizer_config, "bos_token", *st));
    HOTSWAP_ASSIGN_OR_RETURN(st->eos, config_token(cr, *tokenizer_config, "eos_token", *st));
    HOTSWAP_ASSIGN_OR_RETURN(bool add_bos, cr.bool_field(*tokenizer_config, "", "add_bos_token", false));
    if (add_bos) {
      // As transformers' Llama tokenizers rebuild their template from add_bos_token; a
      // post_processor that already starts with BOS is left as it is.
      if (!st->bos) return cr.malformed("add_bos_token", "is true but bos_token is not set");
      if (st->prefix_ids.empty() || st->prefix_ids.front() != *st->bos)
        st->prefix_ids.insert(st->prefix_ids.begin(), *st->bos);
    }
  }
  return st;
}

}  // namespace hotswap::engine::tokenizer_detail
