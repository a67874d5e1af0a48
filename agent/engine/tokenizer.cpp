// The encoding pipeline (added tokens, normalizer, pre-tokenizer, BPE, post-processor) and
// decoding. Reading tokenizer.json is in tokenizer_json.cpp.
#include "agent/engine/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <queue>

#include "agent/engine/byte_level.h"
#include "agent/engine/pcre2_regex.h"
#include "agent/engine/tokenizer_state.h"

namespace hotswap::engine {

using nlohmann::json;
using namespace tokenizer_detail;

namespace {

// BPE results are cached for pieces up to this many bytes, up to this many entries.
constexpr size_t kCacheMaxPieceBytes = 256;
constexpr size_t kCacheMaxEntries = 1 << 17;

bool is_white_space(char32_t c) {  // Unicode White_Space, Rust's \s
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

const Pcre2Regex& word_char_regex() {
  static const Pcre2Regex regex = Pcre2Regex::compile(R"(^\w$)").value();
  return regex;
}

// Start of the character that ends at `end`, or `end` when the bytes before are not a
// well-formed character.
size_t previous_char_start(std::string_view s, size_t begin, size_t end, char32_t* cp) {
  for (size_t back = 1; back <= 4 && end >= begin + back; ++back) {
    const size_t start = end - back;
    if ((static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) continue;
    return utf8_sequence_length(s, start, cp) == back ? start : end;
  }
  return end;
}

bool is_word_char_at(std::string_view s, size_t pos, size_t len) {
  return len > 0 && word_char_regex().search(s.substr(pos, len));
}

struct Segment {
  size_t begin, end;
  int32_t added_id;  // -1: plain text
};

// HF AddedVocabulary::find_matches over text[begin, end).
void split_added_tokens(const TokenizerState& st, const AddedTokenMatcher& matcher, std::string_view text, size_t begin,
                        size_t end, bool parse_special, std::vector<Segment>& out) {
  if (matcher.empty) {
    out.push_back({begin, end, -1});
    return;
  }
  size_t start_offset = begin, pos = begin;
  while (pos < end) {
    size_t start = end, stop = end;
    const AddedToken* tok = nullptr;
    for (size_t p = pos; p < end && tok == nullptr; ++p) {
      for (int32_t idx : matcher.by_first_byte[static_cast<unsigned char>(text[p])]) {
        const std::string& c = st.added[idx].content;
        if (c.size() <= end - p && std::memcmp(text.data() + p, c.data(), c.size()) == 0) {
          tok = &st.added[idx];
          start = p;
          stop = p + c.size();
          break;
        }
      }
    }
    if (tok == nullptr) break;
    pos = stop;
    if (tok->special && !parse_special) continue;
    if (tok->single_word) {
      char32_t cp = 0;
      const size_t prev = previous_char_start(text, begin, start, &cp);
      const bool start_ok = start == begin || !is_word_char_at(text, prev, start - prev);
      const bool stop_ok = stop == end || !is_word_char_at(text, stop, utf8_sequence_length(text.substr(0, end), stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok->lstrip) {
      size_t s = start;
      char32_t cp = 0;
      for (size_t prev; s > begin && (prev = previous_char_start(text, begin, s, &cp)) < s && is_white_space(cp);)
        s = prev;
      start = std::max(s, start_offset);
    }
    if (tok->rstrip) {
      char32_t cp = 0;
      for (size_t len;
           stop < end && (len = utf8_sequence_length(text.substr(0, end), stop, &cp)) > 0 && is_white_space(cp);)
        stop += len;
      pos = std::max(pos, stop);
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok->id});
    start_offset = stop;
  }
  if (start_offset < end) out.push_back({start_offset, end, -1});
}

// HF NormalizedString::split: `matches` are ranges of `piece`; emits the non-empty pieces.
void split_piece(const std::string& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<std::string>& out) {
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != piece.size()) parts.push_back({prev, piece.size(), invert});

  std::vector<Part> pieces;  // is_match here means "remove"
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) pieces.push_back({p.begin, p.end, false});
      break;
    case SplitBehavior::kRemoved:
      pieces = parts;
      break;
    case SplitBehavior::kContiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && !pieces.empty()) {
          pieces.back().end = p.end;
        } else {
          pieces.push_back({p.begin, p.end, false});
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !pieces.empty()) {
          pieces.back().end = p.end;
        } else {
          pieces.push_back({p.begin, p.end, false});
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().begin = it->begin;
        } else {
          pieces.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  for (const Part& p : pieces) {
    if (!p.is_match && p.end > p.begin) out.push_back(piece.substr(p.begin, p.end - p.begin));
  }
}

std::vector<std::pair<size_t, size_t>> find_literal(const std::string& text, const std::string& literal) {
  std::vector<std::pair<size_t, size_t>> matches;
  for (size_t pos = text.find(literal); pos != std::string::npos; pos = text.find(literal, pos + literal.size())) {
    matches.emplace_back(pos, pos + literal.size());
  }
  return matches;
}

std::vector<std::string> run_pre_tokenizer(const TokenizerState& st, std::string_view normalized) {
  std::vector<std::string> pieces;
  if (!normalized.empty()) pieces.emplace_back(normalized);
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : st.pre_tokenizer) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.byte_level) {
        if (step.add_prefix_space && piece[0] != ' ') piece.insert(piece.begin(), ' ');
        if (step.regex) {
          std::vector<std::string> parts;
          split_piece(piece, step.regex->find_all(piece), SplitBehavior::kIsolated, false, parts);
          for (const std::string& part : parts) next.push_back(byte_level_encode(part));
        } else {
          next.push_back(byte_level_encode(piece));
        }
      } else {
        split_piece(piece, step.regex ? step.regex->find_all(piece) : find_literal(piece, step.literal), step.behavior,
                    step.invert, next);
      }
    }
    pieces.swap(next);
  }
  return pieces;
}

// HF Word::merge_all: merges the lowest-ranked adjacent pair (leftmost on ties) until none is left.
std::vector<int32_t> bpe_merge(const TokenizerState& st, std::string_view piece) {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    char32_t cp = 0;
    const size_t len = utf8_sequence_length(piece, pos, &cp);
    // Pieces are byte-level text, so every character is one of the 256 byte characters.
    const auto byte = len > 0 ? byte_level_byte(cp) : std::nullopt;
    const int32_t id = byte ? st.byte_token_id[*byte] : st.byte_token_id[static_cast<unsigned char>(piece[pos])];
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, false});
    pos += len > 0 ? len : 1;
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }  // min-heap
  };
  auto lookup = [&](int32_t a, int32_t b) -> const std::pair<uint32_t, int32_t>* {
    auto it = st.merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == st.merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Merge> queue;
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) {
    if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push({m->first, i, m->second});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.removed || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    const auto* current_merge = lookup(cur.id, right.id);
    if (current_merge == nullptr || current_merge->second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.next = right.next;
    symbols[next_pos].removed = true;
    if (right.next != -1) symbols[right.next].prev = top.pos;
    if (cur.prev != -1) {
      if (const auto* m = lookup(symbols[cur.prev].id, cur.id)) queue.push({m->first, cur.prev, m->second});
    }
    if (cur.next != -1) {
      if (const auto* m = lookup(cur.id, symbols[cur.next].id)) queue.push({m->first, top.pos, m->second});
    }
  }
  std::vector<int32_t> ids;
  for (const Symbol& s : symbols) {
    if (!s.removed) ids.push_back(s.id);
  }
  return ids;
}

void bpe_piece(const TokenizerState& st, const std::string& piece, std::vector<int32_t>& out) {
  const bool cacheable = piece.size() <= kCacheMaxPieceBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(st.cache_mu);
    auto it = st.cache.find(piece);
    if (it != st.cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  auto whole = st.ignore_merges ? st.vocab.find(piece) : st.vocab.end();
  if (whole != st.vocab.end()) {
    ids.push_back(whole->second);
  } else {
    ids = bpe_merge(st, piece);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(st.cache_mu);
    if (st.cache.size() < kCacheMaxEntries) st.cache.emplace(piece, std::move(ids));
  }
}

}  // namespace

StatusOr<Tokenizer> Tokenizer::load_file(const std::string& tokenizer_json_path) {
  HOTSWAP_ASSIGN_OR_RETURN(json tokenizer_json, read_json_file(tokenizer_json_path));
  const size_t slash = tokenizer_json_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : tokenizer_json_path.substr(0, slash + 1);
  const std::string config_path = dir + "tokenizer_config.json";
  std::optional<json> config;
  if (std::ifstream(config_path).good()) {
    HOTSWAP_ASSIGN_OR_RETURN(config, read_json_file(config_path));
  }
  HOTSWAP_ASSIGN_OR_RETURN(
      std::shared_ptr<TokenizerState> state,
      load_tokenizer_state(tokenizer_json, tokenizer_json_path, config ? &*config : nullptr, config_path));
  return Tokenizer(std::move(state));
}

StatusOr<Tokenizer> Tokenizer::from_json(const json& tokenizer_json, const std::string& source_name,
                                         const json* tokenizer_config) {
  HOTSWAP_ASSIGN_OR_RETURN(
      std::shared_ptr<TokenizerState> state,
      load_tokenizer_state(tokenizer_json, source_name, tokenizer_config, "tokenizer_config.json"));
  return Tokenizer(std::move(state));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens, bool parse_special) const {
  const TokenizerState& st = *state_;
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = st.prefix_ids;
  std::vector<Segment> raw_segments, segments;
  split_added_tokens(st, st.raw_matcher, text, 0, text.size(), parse_special, raw_segments);
  for (const Segment& raw : raw_segments) {
    if (raw.added_id >= 0) {
      ids.push_back(raw.added_id);
      continue;
    }
    // The normalizer is the identity (see check_normalizer), so normalized-token matching runs
    // on the same bytes.
    segments.clear();
    split_added_tokens(st, st.normalized_matcher, text, raw.begin, raw.end, parse_special, segments);
    for (const Segment& seg : segments) {
      if (seg.added_id >= 0) {
        ids.push_back(seg.added_id);
        continue;
      }
      for (const std::string& piece : run_pre_tokenizer(st, text.substr(seg.begin, seg.end - seg.begin))) {
        bpe_piece(st, piece, ids);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), st.suffix_ids.begin(), st.suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const TokenizerState& st = *state_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= st.kind_of_id.size() || st.kind_of_id[id] == kNoToken) continue;
    if (skip_special_tokens && st.kind_of_id[id] == kSpecialToken) continue;
    bytes += st.bytes_of_id[id];
  }
  return utf8_lossy(bytes);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const TokenizerState& st = *state_;
  if (id < 0 || static_cast<size_t>(id) >= st.bytes_of_id.size()) return {};
  return st.bytes_of_id[id];
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(state_->kind_of_id.size());
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = state_->added_ids.find(key); it != state_->added_ids.end()) return it->second;
  if (auto it = state_->vocab.find(key); it != state_->vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const TokenizerState& st = *state_;
  if (id < 0 || static_cast<size_t>(id) >= st.kind_of_id.size() || st.kind_of_id[id] == kNoToken) return std::nullopt;
  return st.token_of_id[id];
}

bool Tokenizer::is_special(int32_t id) const {
  const TokenizerState& st = *state_;
  return id >= 0 && static_cast<size_t>(id) < st.kind_of_id.size() && st.kind_of_id[id] == kSpecialToken;
}

std::optional<int32_t> Tokenizer::bos_id() const {
  return state_->bos;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return state_->eos;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  return run_pre_tokenizer(*state_, text);
}

}  // namespace hotswap::engine
