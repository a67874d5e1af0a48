#include "agent/engine/bpe_trainer.h"

#include <algorithm>
#include <cstdint>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "agent/engine/byte_level.h"
#include "agent/engine/pcre2_regex.h"

namespace hotswap::engine {

const char* const kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

using nlohmann::json;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
}
int32_t pair_left(uint64_t key) {
  return static_cast<int32_t>(key >> 32);
}
int32_t pair_right(uint64_t key) {
  return static_cast<int32_t>(key & 0xFFFFFFFFu);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

struct PairCount {
  int64_t count;
  uint64_t pair;
  // priority_queue pops the largest: the highest count, then the smallest pair.
  bool operator<(const PairCount& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

// The corpus with the special tokens cut out, as the pieces between them.
std::vector<std::string_view> cut_special_tokens(std::string_view corpus, const std::vector<std::string>& specials) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start < corpus.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (const std::string& s : specials) {
      const size_t pos = corpus.find(s, start);
      if (pos != std::string_view::npos && (pos < best || (pos == best && s.size() > best_len))) {
        best = pos;
        best_len = s.size();
      }
    }
    if (best == std::string_view::npos) break;
    if (best > start) parts.push_back(corpus.substr(start, best - start));
    start = best + best_len;
  }
  if (start < corpus.size()) parts.push_back(corpus.substr(start));
  return parts;
}

// Unique pre-tokenized pieces (the regex matches and the gaps between them) with their counts,
// sorted by bytes so the word order does not depend on hashing.
std::vector<Word> count_words(const std::vector<std::string_view>& parts, const Pcre2Regex& regex) {
  std::unordered_map<std::string_view, int64_t> counts;
  for (std::string_view part : parts) {
    size_t prev = 0;
    for (const auto& [b, e] : regex.find_all(part)) {
      if (b > prev) ++counts[part.substr(prev, b - prev)];
      if (e > b) ++counts[part.substr(b, e - b)];
      prev = e;
    }
    if (prev < part.size()) ++counts[part.substr(prev)];
  }
  std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [piece, count] : sorted) {
    Word w;
    w.count = count;
    for (unsigned char c : piece) w.symbols.push_back(c);
    words.push_back(std::move(w));
  }
  return words;
}

}  // namespace

StatusOr<json> train_byte_level_bpe(const std::string& corpus, const BpeTrainOptions& options) {
  const int64_t num_specials = static_cast<int64_t>(options.special_tokens.size());
  if (options.vocab_size < 256 + num_specials) {
    return invalid_argument("BPE training: vocab_size " + std::to_string(options.vocab_size) +
                            " cannot hold the 256 byte tokens and " + std::to_string(num_specials) + " special tokens");
  }
  std::unordered_set<std::string> seen_specials;
  for (const std::string& s : options.special_tokens) {
    if (s.empty()) return invalid_argument("BPE training: special_tokens has an empty token");
    if (!seen_specials.insert(s).second) return invalid_argument("BPE training: special token '" + s + "' is repeated");
  }
  const std::string pattern = options.split_pattern.empty() ? kQwen2SplitPattern : options.split_pattern;
  auto regex = Pcre2Regex::compile(pattern);
  if (!regex.ok())
    return invalid_argument("BPE training: split_pattern '" + pattern + "': " + regex.status().message());

  std::vector<Word> words = count_words(cut_special_tokens(corpus, options.special_tokens), *regex);

  // Token strings in byte-level spelling; ids 0..255 are the bytes.
  std::vector<std::string> token_of_id;
  std::unordered_map<std::string, int32_t> id_of_token;
  for (int b = 0; b < 256; ++b) {
    token_of_id.push_back(byte_level_char(static_cast<uint8_t>(b)));
    id_of_token.emplace(token_of_id.back(), b);
  }

  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<uint32_t>> words_with_pair;  // may list a word twice or stale
  for (uint32_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t key = pair_key(s[i], s[i + 1]);
      pair_counts[key] += words[w].count;
      auto& list = words_with_pair[key];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  std::priority_queue<PairCount> queue;
  for (const auto& [key, count] : pair_counts) queue.push({count, key});

  const size_t target_tokens = static_cast<size_t>(options.vocab_size - num_specials);
  std::vector<std::string> merges;
  std::vector<uint32_t> visited(words.size(), UINT32_MAX);
  std::unordered_set<uint64_t> new_pairs;
  while (token_of_id.size() < target_tokens && !queue.empty()) {
    const PairCount top = queue.top();
    queue.pop();
    auto current = pair_counts.find(top.pair);
    const int64_t count = current == pair_counts.end() ? 0 : current->second;
    if (count != top.count) {  // stale: counts of existing pairs only go down
      if (count > 0) queue.push({count, top.pair});
      continue;
    }
    if (count <= 0) continue;

    const int32_t a = pair_left(top.pair), b = pair_right(top.pair);
    const std::string merged = token_of_id[a] + token_of_id[b];
    int32_t c;
    if (auto it = id_of_token.find(merged); it != id_of_token.end()) {
      c = it->second;
    } else {
      c = static_cast<int32_t>(token_of_id.size());
      token_of_id.push_back(merged);
      id_of_token.emplace(merged, c);
    }
    merges.push_back(token_of_id[a] + " " + token_of_id[b]);

    const uint32_t stamp = static_cast<uint32_t>(merges.size());
    new_pairs.clear();
    std::vector<uint32_t> affected = std::move(words_with_pair[top.pair]);
    words_with_pair.erase(top.pair);
    for (uint32_t w : affected) {
      if (visited[w] == stamp) continue;
      visited[w] = stamp;
      Word& word = words[w];
      auto& s = word.symbols;
      bool contains = false;
      for (size_t i = 0; i + 1 < s.size() && !contains; ++i) contains = s[i] == a && s[i + 1] == b;
      if (!contains) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) pair_counts[pair_key(s[i], s[i + 1])] -= word.count;
      size_t out = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[out++] = c;
          ++i;
        } else {
          s[out++] = s[i];
        }
      }
      s.resize(out);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t key = pair_key(s[i], s[i + 1]);
        pair_counts[key] += word.count;
        if (s[i] == c || s[i + 1] == c) {
          new_pairs.insert(key);
          auto& list = words_with_pair[key];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    pair_counts.erase(top.pair);
    for (uint64_t key : new_pairs) {
      const int64_t n = pair_counts[key];
      if (n > 0) queue.push({n, key});
    }
  }

  json vocab = json::object();
  for (size_t id = 0; id < token_of_id.size(); ++id) vocab[token_of_id[id]] = id;
  json added_tokens = json::array();
  for (const std::string& special : options.special_tokens) {
    if (vocab.contains(special)) {
      return invalid_argument("BPE training: special token '" + special + "' is already a learned or byte token");
    }
    const size_t id = vocab.size();
    vocab[special] = id;
    added_tokens.push_back({{"id", id},
                            {"content", special},
                            {"single_word", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"normalized", false},
                            {"special", true}});
  }
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json pre_tokenizer = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                    byte_level})}};
  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", merges}};
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", std::move(added_tokens)},
              {"normalizer", nullptr},
              {"pre_tokenizer", std::move(pre_tokenizer)},
              {"post_processor", byte_level},
              {"decoder", byte_level},
              {"model", std::move(model)}};
}

}  // namespace hotswap::engine
