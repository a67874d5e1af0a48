#include "agent/engine/pcre2_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "agent/engine/byte_level.h"

namespace hotswap::engine {
namespace {

pcre2_code* as_code(const std::shared_ptr<void>& p) {
  return static_cast<pcre2_code*>(p.get());
}

struct MatchData {
  explicit MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(data); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* data;
};

// One match attempt from `offset`. Returns the PCRE2 result code. A JIT failure (its stack is
// small and fixed) is retried by the interpreter, whose backtracking lives on the heap.
int match_at(const pcre2_code* code, std::string_view text, size_t offset, MatchData& md) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), offset, 0, md.data, nullptr);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_JIT, md.data, nullptr);
  }
  return rc;
}

}  // namespace

StatusOr<Pcre2Regex> Pcre2Regex::compile(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    return invalid_argument("regex does not compile at offset " + std::to_string(error_offset) + ": " +
                            reinterpret_cast<const char*>(buffer));
  }
  // A missing JIT only costs speed; the interpreter gives the same matches.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Pcre2Regex regex;
  regex.code_ = std::shared_ptr<void>(code, [](void* p) { pcre2_code_free(static_cast<pcre2_code*>(p)); });
  regex.pattern_ = std::string(pattern);
  return regex;
}

std::vector<std::pair<size_t, size_t>> Pcre2Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  const pcre2_code* code = as_code(code_);
  MatchData md(code);
  size_t offset = 0;
  bool have_last_end = false;
  size_t last_end = 0;
  while (offset <= text.size()) {
    const int rc = match_at(code, text, offset, md);
    // NOMATCH ends the search; any other error (match limits on pathological input) leaves the
    // rest of the text as one gap, which still reaches the model byte for byte.
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.data);
    const size_t start = ov[0], end = ov[1];
    if (start == end && have_last_end && last_end == end) {
      if (offset >= text.size()) break;
      const size_t len = utf8_sequence_length(text, offset);
      offset += len == 0 ? 1 : len;
      continue;
    }
    matches.emplace_back(start, end);
    have_last_end = true;
    last_end = end;
    offset = end;
    if (start == end) {
      if (offset >= text.size()) break;
      const size_t len = utf8_sequence_length(text, offset);
      offset += len == 0 ? 1 : len;
    }
  }
  return matches;
}

bool Pcre2Regex::search(std::string_view text) const {
  const pcre2_code* code = as_code(code_);
  MatchData md(code);
  return match_at(code, text, 0, md) >= 0;
}

}  // namespace hotswap::engine
