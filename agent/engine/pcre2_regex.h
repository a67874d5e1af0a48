// A compiled PCRE2 regex for the tokenizer's pre-tokenizer patterns.
//
// Compiled with PCRE2_UTF | PCRE2_UCP (so \p{L}, \s and (?i) are Unicode-aware, as Oniguruma is
// in HF tokenizers) and PCRE2_MATCH_INVALID_UTF: ill-formed UTF-8 in the subject is never matched
// by any pattern item instead of being undefined behaviour, so such bytes end up in the gaps
// between matches and still reach the byte-level model. JIT-compiled when the library has a JIT.
// Immutable after compile; find_all may be called from several threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace hotswap::engine {

class Pcre2Regex {
 public:
  // invalid_argument naming the offset and PCRE2's reason when the pattern does not compile.
  static StatusOr<Pcre2Regex> compile(std::string_view pattern);

  // Byte ranges [start, end) of successive non-overlapping leftmost matches, as Oniguruma's
  // find_iter in HF tokenizers yields them: after an empty match the search moves one character
  // on, and an empty match right where the previous match ended is not reported.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  // Whether the pattern matches somewhere in `text`.
  bool search(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8, freed with pcre2_code_free_8
  std::string pattern_;
};

}  // namespace hotswap::engine
