// TokenizerState: the tables a loaded Tokenizer encodes and decodes with. Internal to
// tokenizer.cpp (the pipeline) and tokenizer_json.cpp (reading tokenizer.json into it).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/engine/pcre2_regex.h"
#include "common/status.h"

namespace hotswap::engine {
namespace tokenizer_detail {

// Ids above this are taken for a corrupt file rather than a real vocabulary (the largest real
// ones are ~256k); it also bounds the id tables.
constexpr int64_t kMaxTokenId = 1 << 24;

enum IdKind : uint8_t { kNoToken = 0, kModelToken, kAddedToken, kSpecialToken };

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Leftmost-longest matching over a set of added tokens (HF uses Aho-Corasick with
// MatchKind::LeftmostLongest); candidates are bucketed by first byte, longest first.
struct AddedTokenMatcher {
  std::array<std::vector<int32_t>, 256> by_first_byte;  // indices into TokenizerState::added
  bool empty = true;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  bool byte_level = false;
  // ByteLevel
  bool add_prefix_space = false;
  // ByteLevel with use_regex (the GPT-2 pattern), or Split with a Regex pattern.
  std::optional<Pcre2Regex> regex;
  // Split with a String pattern.
  std::string literal;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

}  // namespace tokenizer_detail

struct TokenizerState {
  std::unordered_map<std::string, int32_t> vocab;  // model vocabulary
  std::unordered_map<std::string, int32_t> added_ids;
  std::vector<std::string> token_of_id;
  std::vector<std::string> bytes_of_id;
  std::vector<uint8_t> kind_of_id;  // IdKind
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges;
  std::array<int32_t, 256> byte_token_id{};
  bool ignore_merges = false;

  std::vector<tokenizer_detail::AddedToken> added;
  tokenizer_detail::AddedTokenMatcher raw_matcher;         // normalized == false: matched on the raw text
  tokenizer_detail::AddedTokenMatcher normalized_matcher;  // normalized == true: matched after normalization

  std::vector<tokenizer_detail::PreTokenizerStep> pre_tokenizer;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post_processor, single sequence
  std::optional<int32_t> bos, eos;

  // BPE results per piece, shared by every thread that encodes (hence the mutex).
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
};

namespace tokenizer_detail {

// Parses a JSON file; not_found when it cannot be opened, data_loss when it is not JSON.
StatusOr<nlohmann::json> read_json_file(const std::string& path);

// Builds the state from tokenizer.json (and tokenizer_config.json when non-null); every error
// names `source` or `config_source` and the field.
StatusOr<std::shared_ptr<TokenizerState>> load_tokenizer_state(const nlohmann::json& tokenizer_json,
                                                               const std::string& source,
                                                               const nlohmann::json* tokenizer_config,
                                                               const std::string& config_source);

}  // namespace tokenizer_detail
}  // namespace hotswap::engine
