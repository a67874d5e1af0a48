// Trains a byte-level BPE tokenizer and writes it as a Hugging Face tokenizer.json.
//
// The standard algorithm: split the corpus with the pre-tokenizer regex, count the unique
// pieces, then repeatedly merge the most frequent adjacent pair of tokens (ties go to the
// smallest (left id, right id)), updating pair counts only in the words that contain the merged
// pair. Deterministic: the same corpus and options give the same JSON. The result loads with
// Tokenizer::from_json and with HF tokenizers.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::engine {

struct BpeTrainOptions {
  int vocab_size = 1024;                    // including the 256 byte tokens and the special tokens
  std::vector<std::string> special_tokens;  // appended after merges, marked special
  std::string split_pattern;                // pre-tokenizer regex; empty = the Qwen2 pattern
};

// The pre-tokenizer regex of Qwen2 (used when BpeTrainOptions::split_pattern is empty).
extern const char* const kQwen2SplitPattern;

// Returns a complete tokenizer.json: version "1.0", normalizer null, pre_tokenizer
// Sequence[Split(Regex, Isolated), ByteLevel(add_prefix_space=false, trim_offsets=false,
// use_regex=false)], decoder ByteLevel, post_processor ByteLevel, model BPE whose vocab has ids
// 0..255 for the 256 bytes in byte order, then one id per new merged token, then the special
// tokens; merges as ["a b", ...]; added_tokens for the specials.
//
// Occurrences of the special tokens in the corpus are cut out before training, so no merge
// learns their pieces. Training stops early, with a smaller vocabulary, when no pair is left
// to merge. In the rare case that two different pairs spell the same string (a+bc and ab+c),
// the second merge is recorded with the existing id, as HF's trainer does, and adds no token.
// invalid_argument for a vocab_size too small to hold the bytes and the specials, an empty or
// repeated special token, or a split_pattern that does not compile.
StatusOr<nlohmann::json> train_byte_level_bpe(const std::string& corpus, const BpeTrainOptions& options);

}  // namespace hotswap::engine
