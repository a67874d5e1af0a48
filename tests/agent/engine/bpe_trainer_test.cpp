// train_byte_level_bpe: output layout, exact vocabulary size, determinism, compression, speed,
// and that the result loads and round-trips in Tokenizer.
#include "agent/engine/bpe_trainer.h"

#include <gtest/gtest.h>

#include <map>

#include "agent/engine/byte_level.h"
#include "agent/engine/pcre2_regex.h"
#include "agent/engine/synthetic_corpus.h"
#include "agent/engine/tokenizer.h"

namespace hotswap::engine {
namespace {

using nlohmann::json;

BpeTrainOptions options_with(int vocab_size, std::vector<std::string> specials = {}) {
  BpeTrainOptions o;
  o.vocab_size = vocab_size;
  o.special_tokens = std::move(specials);
  return o;
}

const std::string& corpus_200k() {
  static const std::string corpus = synthetic_corpus(1, 200'000);
  return corpus;
}

TEST(BpeTrainer, ProducesHfTokenizerJsonLayout) {
  auto j = train_byte_level_bpe(corpus_200k(), options_with(512, {"<|endoftext|>", "<|im_end|>"}));
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ((*j)["version"], "1.0");
  EXPECT_TRUE((*j)["normalizer"].is_null());
  const json& pre = (*j)["pre_tokenizer"];
  EXPECT_EQ(pre["type"], "Sequence");
  ASSERT_EQ(pre["pretokenizers"].size(), 2u);
  EXPECT_EQ(pre["pretokenizers"][0]["type"], "Split");
  EXPECT_EQ(pre["pretokenizers"][0]["pattern"]["Regex"], kQwen2SplitPattern);
  EXPECT_EQ(pre["pretokenizers"][0]["behavior"], "Isolated");
  EXPECT_EQ(pre["pretokenizers"][1],
            (json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}));
  EXPECT_EQ((*j)["decoder"]["type"], "ByteLevel");
  EXPECT_EQ((*j)["post_processor"]["type"], "ByteLevel");
  const json& model = (*j)["model"];
  EXPECT_EQ(model["type"], "BPE");
  EXPECT_EQ(model["byte_fallback"], false);
  // Ids 0..255 are the bytes in byte order.
  for (int b = 0; b < 256; ++b) EXPECT_EQ(model["vocab"][byte_level_char(static_cast<uint8_t>(b))], b);
  // Merges are "a b" strings, and ids after 255 follow the merges in order.
  ASSERT_GE(model["merges"].size(), 1u);
  const std::string first = model["merges"][0];
  const size_t space = first.find(' ');
  ASSERT_NE(space, std::string::npos);
  EXPECT_EQ(model["vocab"][first.substr(0, space) + first.substr(space + 1)], 256);
  // Specials come last, in order, as special added tokens.
  ASSERT_EQ((*j)["added_tokens"].size(), 2u);
  EXPECT_EQ((*j)["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ((*j)["added_tokens"][0]["id"], 510);
  EXPECT_EQ((*j)["added_tokens"][1]["id"], 511);
  EXPECT_EQ((*j)["added_tokens"][1]["special"], true);
  EXPECT_EQ(model["vocab"]["<|im_end|>"], 511);
}

// The textbook algorithm, recounting every pair after every merge.
std::vector<std::string> naive_merges(const std::string& corpus, const std::string& pattern, int vocab_size) {
  auto regex = Pcre2Regex::compile(pattern);
  EXPECT_TRUE(regex.ok());
  std::vector<std::vector<int32_t>> words;
  auto add = [&](std::string_view piece) {
    std::vector<int32_t> w;
    for (unsigned char c : piece) w.push_back(c);
    words.push_back(w);
  };
  size_t prev = 0;
  for (const auto& [b, e] : regex->find_all(corpus)) {
    if (b > prev) add(std::string_view(corpus).substr(prev, b - prev));
    add(std::string_view(corpus).substr(b, e - b));
    prev = e;
  }
  if (prev < corpus.size()) add(std::string_view(corpus).substr(prev));
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_level_char(static_cast<uint8_t>(b)));
  std::vector<std::string> merges;
  while (static_cast<int>(tokens.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (const auto& w : words) {
      for (size_t i = 0; i + 1 < w.size(); ++i) ++counts[{w[i], w[i + 1]}];
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 0;
    for (const auto& [pair, count] : counts) {
      if (count > best_count) {  // std::map order: the smallest pair wins ties
        best = pair;
        best_count = count;
      }
    }
    if (best_count == 0) break;
    const std::string merged = tokens[best.first] + tokens[best.second];
    merges.push_back(tokens[best.first] + " " + tokens[best.second]);
    auto found = std::find(tokens.begin(), tokens.end(), merged);
    const int32_t id = static_cast<int32_t>(found - tokens.begin());
    if (found == tokens.end()) tokens.push_back(merged);
    for (auto& w : words) {
      std::vector<int32_t> out;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == best.first && w[i + 1] == best.second) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(w[i]);
        }
      }
      w = out;
    }
  }
  return merges;
}

TEST(BpeTrainer, IncrementalCountsGiveSameMergesAsNaiveRecount) {
  const std::string corpus = synthetic_corpus(11, 30'000) + "aaaaaaa abababab aaa";
  auto j = train_byte_level_bpe(corpus, options_with(700));
  ASSERT_TRUE(j.ok());
  const auto expected = naive_merges(corpus, kQwen2SplitPattern, 700);
  EXPECT_EQ((*j)["model"]["merges"].get<std::vector<std::string>>(), expected);
}

TEST(BpeTrainer, VocabularySizeIsExact) {
  for (int vocab_size : {256 + 3, 300, 1000, 2048}) {
    auto j = train_byte_level_bpe(corpus_200k(), options_with(vocab_size, {"<a>", "<b>", "<c>"}));
    ASSERT_TRUE(j.ok()) << j.status().to_string();
    EXPECT_EQ((*j)["model"]["vocab"].size(), static_cast<size_t>(vocab_size));
    auto tok = Tokenizer::from_json(*j, "trained");
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    EXPECT_EQ(tok->vocab_size(), vocab_size);
    EXPECT_EQ(tok->token_to_id("<c>"), vocab_size - 1);
    EXPECT_TRUE(tok->is_special(vocab_size - 1));
  }
}

TEST(BpeTrainer, SameCorpusAndOptionsGiveIdenticalJson) {
  const auto options = options_with(800, {"<|endoftext|>"});
  auto a = train_byte_level_bpe(corpus_200k(), options);
  auto b = train_byte_level_bpe(std::string(corpus_200k()), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->dump(), b->dump());
  auto c = train_byte_level_bpe(synthetic_corpus(2, 200'000), options);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->dump(), c->dump());
}

TEST(BpeTrainer, TrainedTokenizerCompressesHeldOutText) {
  auto j = train_byte_level_bpe(corpus_200k(), options_with(1024));
  ASSERT_TRUE(j.ok());
  auto tok = Tokenizer::from_json(*j, "trained");
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  const std::string held_out = synthetic_corpus(12345, 100'000);
  const auto ids = tok->encode(held_out);
  EXPECT_EQ(tok->decode(ids), held_out);
  const double bytes_per_token = static_cast<double>(held_out.size()) / ids.size();
  EXPECT_GT(bytes_per_token, 2.5) << ids.size() << " tokens for " << held_out.size() << " bytes";
}

TEST(BpeTrainer, MergesFrequentWordsIntoSingleTokens) {
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += "cache cache migration ";
  auto j = train_byte_level_bpe(corpus, options_with(300));
  ASSERT_TRUE(j.ok());
  auto tok = Tokenizer::from_json(*j, "trained");
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(tok->encode(" cache").size(), 1u);
  EXPECT_EQ(tok->encode(" migration").size(), 1u);
  // Training stops when no pair is left, with a smaller vocabulary.
  EXPECT_LT((*j)["model"]["vocab"].size(), 300u);
}

TEST(BpeTrainer, SpecialTokensInCorpusAreNotLearnedAndEncodeAsOneToken) {
  std::string corpus;
  for (int i = 0; i < 300; ++i) corpus += "<|endoftext|>hello ";
  auto j = train_byte_level_bpe(corpus, options_with(400, {"<|endoftext|>"}));
  ASSERT_TRUE(j.ok());
  for (const auto& m : (*j)["model"]["merges"]) {
    EXPECT_EQ(m.get<std::string>().find("endoftext"), std::string::npos) << m;
  }
  auto tok = Tokenizer::from_json(*j, "trained");
  ASSERT_TRUE(tok.ok());
  const auto ids = tok->encode("<|endoftext|>hello");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], *tok->token_to_id("<|endoftext|>"));
}

TEST(BpeTrainer, CustomSplitPatternIsUsedAndWritten) {
  BpeTrainOptions o = options_with(300);
  o.split_pattern = R"(\S+|\s+)";
  auto j = train_byte_level_bpe("ab,cd ab,cd ab,cd", o);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], o.split_pattern);
  auto tok = Tokenizer::from_json(*j, "trained");
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(tok->encode("ab,cd").size(), 1u);  // "," is not a split point with this pattern
}

TEST(BpeTrainer, RejectsBadOptions) {
  auto small = train_byte_level_bpe("x", options_with(257, {"<a>", "<b>"}));
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("vocab_size 257"), std::string::npos);

  BpeTrainOptions bad_regex = options_with(300);
  bad_regex.split_pattern = "(";
  auto regex = train_byte_level_bpe("x", bad_regex);
  ASSERT_FALSE(regex.ok());
  EXPECT_NE(regex.status().message().find("split_pattern"), std::string::npos);

  EXPECT_FALSE(train_byte_level_bpe("x", options_with(300, {""})).ok());
  EXPECT_FALSE(train_byte_level_bpe("x", options_with(300, {"<a>", "<a>"})).ok());
  auto clash = train_byte_level_bpe("x", options_with(300, {"a"}));  // already the byte token 'a'
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("'a'"), std::string::npos);
}

// The medium preset's tokenizer: the corpus has enough distinct pairs to fill 4096 ids.
TEST(BpeTrainer, FillsVocab4096FromOneMegabyteCorpus) {
  const std::string corpus = synthetic_corpus(3, 1 << 20);
  auto j = train_byte_level_bpe(corpus, options_with(4096, {"<|endoftext|>"}));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["model"]["vocab"].size(), 4096u);
}

}  // namespace
}  // namespace hotswap::engine
