// Tokenizer: a Hugging Face tokenizer.json byte-level BPE tokenizer (GPT-2, Llama-3, Qwen2 style).
//
// Follows HF `tokenizers` for the subset those models use: added tokens are split out of the text
// first (leftmost-longest, honouring special/lstrip/rstrip/single_word/normalized), the rest is
// normalized (null or NFC, which is treated as the identity), pre-tokenized (ByteLevel, Split,
// Sequence), and each piece is BPE-merged by lowest merge rank; the post_processor
// (TemplateProcessing, ByteLevel, Sequence) adds special tokens such as BOS. Anything outside that
// subset, and every malformed field, is a Status naming the file and the field at load time.
//
// Threads: a Tokenizer is immutable after loading except for an internal, mutex-guarded cache of
// BPE results, so encode/decode may be called from several threads at once. Copies are cheap and
// share the loaded tables.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::engine {

struct TokenizerState;

class Tokenizer {
 public:
  // Reads tokenizer.json, and tokenizer_config.json beside it when present (bos_token,
  // eos_token, add_bos_token). not_found when the file is missing, data_loss when it is not
  // JSON or a field is malformed, unimplemented for valid features outside the subset.
  static StatusOr<Tokenizer> load_file(const std::string& tokenizer_json_path);

  // `source_name` prefixes every error message ("tokenizer.json: model.vocab is missing").
  static StatusOr<Tokenizer> from_json(const nlohmann::json& tokenizer_json, const std::string& source_name,
                                       const nlohmann::json* tokenizer_config = nullptr);

  // Splits out added tokens (special ones only when parse_special; non-special added tokens
  // always), normalizes, pre-tokenizes and applies BPE; when add_special_tokens, applies the
  // post_processor (and prepends BOS when tokenizer_config says add_bos_token and the
  // post_processor adds none). Any byte string is accepted: ill-formed UTF-8 bytes are never
  // matched by the pre-tokenizer regexes and are encoded byte by byte.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true, bool parse_special = true) const;

  // Concatenates token_bytes of the ids (skipping special tokens when asked and ids that are not
  // in the vocabulary, as HF does) and replaces ill-formed UTF-8 with U+FFFD (errors="replace").
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // The raw bytes one token stands for, possibly a partial UTF-8 sequence (for streaming);
  // empty for an id that is not in the vocabulary.
  std::string token_bytes(int32_t id) const;

  // Max id + 1 over the vocabulary and the added tokens.
  int32_t vocab_size() const;

  // Id of a vocabulary or added-token string (in the vocabulary's byte-level spelling, e.g. "Ġthe").
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The string of an id (byte-level spelling, or an added token's content).
  std::optional<std::string> id_to_token(int32_t id) const;

  // Whether the id is an added token marked special.
  bool is_special(int32_t id) const;

  // From tokenizer_config.json; nullopt without one or when it says null.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  // The normalizer and pre_tokenizer applied to `text` (no added-token splitting): the pieces BPE
  // sees, in byte-level spelling. For tests and debugging.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

 private:
  explicit Tokenizer(std::shared_ptr<const TokenizerState> state) : state_(std::move(state)) {}
  std::shared_ptr<const TokenizerState> state_;
};

}  // namespace hotswap::engine
