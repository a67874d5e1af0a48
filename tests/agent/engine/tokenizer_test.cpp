// Tokenizer: exact encodings on a hand-written fixture, HF pipeline details (added tokens,
// pre-tokenizer behaviours, post-processor), byte-exact round trips, and load errors that name
// the field.
//
// The fixture tests/fixtures/tokenizer/tiny_llama3 is Llama-3 shaped: ids 0..255 are the 256
// byte-level characters in byte order (so 'a' = 97, 'Ġ' (space) = 32, 'Ċ' (newline) = 10), then
// one id per merge, in rank order:
//   256 he, 257 ll, 258 hell, 259 hello, 260 Ġw, 261 or, 262 Ġwor, 263 Ġworl, 264 Ġworld,
//   265 ĠĠ, 266 ĊĊ, 267 bc (rank 11), 268 ab (rank 12), 269 abc (rank 13),
// 270 Ġxyz (in the vocab, no merges reach it; only ignore_merges=true emits it), and added tokens
// 300 <|begin_of_text|>, 301 <|end_of_text|>, 302 <|eot_id|>, 303 <|start|>, 304 <|start|>!
// (all special) and 305 <tool> (not special). The post_processor adds BOS (300).
#include "agent/engine/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "agent/engine/bpe_trainer.h"
#include "agent/engine/byte_level.h"
#include "agent/engine/synthetic_corpus.h"

namespace hotswap::engine {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

const std::string kFixtureDir = std::string(HOTSWAP_SOURCE_DIR) + "/tests/fixtures/tokenizer/tiny_llama3";

json fixture_json() {
  std::ifstream in(kFixtureDir + "/tokenizer.json");
  return json::parse(in);
}

Tokenizer must_load(const json& j, const json* config = nullptr) {
  auto tok = Tokenizer::from_json(j, "tokenizer.json", config);
  EXPECT_TRUE(tok.ok()) << tok.status().to_string();
  return std::move(tok).value();
}

Tokenizer fixture() {
  auto tok = Tokenizer::load_file(kFixtureDir + "/tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status().to_string();
  return std::move(tok).value();
}

// GPT-2 style: ByteLevel pre-tokenizer with the GPT-2 regex and add_prefix_space, ByteLevel
// post-processor, ignore_merges off.
json gpt2_json() {
  json j = fixture_json();
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["post_processor"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  j["model"]["ignore_merges"] = false;
  return j;
}

std::vector<std::string> byte_level(std::vector<std::string> raw) {
  for (auto& s : raw) s = byte_level_encode(s);
  return raw;
}

std::string concat_token_bytes(const Tokenizer& tok, const Ids& ids) {
  std::string out;
  for (int32_t id : ids) out += tok.token_bytes(id);
  return out;
}

const std::vector<std::string>& tricky_strings() {
  static const std::vector<std::string> strings = {
      "",
      " ",
      "   ",
      "\t",
      "\t\t x",
      "\n",
      "\r\n",
      "\r\n\r\n",
      "\n\n\n",
      "a\r\n\r\nb",
      "x  y   z    ",
      "  leading",
      "trailing  ",
      "é",
      "naïve café",
      "中文字符",
      "🚀🔥 emoji ✅",
      "a🙂b",
      "'s 'S 'll 'LL 'd",
      "HE'S",
      "123456789",
      "3.14159",
      "x=1;y=2",
      "<|eot_id",
      "<|begin_of_text|",
      "|>",
      "ǅungla Ωμέγα",
      "\u00a0nbsp\u2003em space\u3000ideographic",
      "tab\there",
      "kv_cache[3] = 42;",
      std::string(1000, ' '),
      std::string(300, 'a'),
      "\xe2\x80\xa8line separator",
  };
  return strings;
}

// ---------------------------------------------------------------------------------------------
// Exact encodings on the fixture.

TEST(Tokenizer, EncodesFixtureWithKnownIds) {
  Tokenizer tok = fixture();
  EXPECT_EQ(tok.encode("hello world", false), (Ids{259, 264}));
  EXPECT_EQ(tok.encode("hello", false), (Ids{259}));
  EXPECT_EQ(tok.encode(" hello", false), (Ids{32, 259}));  // no "Ġ hello" merge
  EXPECT_EQ(tok.encode("hell", false), (Ids{258}));
  EXPECT_EQ(tok.encode("helo", false), (Ids{256, 108, 111}));
  EXPECT_EQ(tok.encode("\n\n", false), (Ids{266}));
}

TEST(Tokenizer, AppliesMergesByLowestRankNotLeftToRight) {
  json j = fixture_json();
  j["model"]["ignore_merges"] = false;
  Tokenizer tok = must_load(j);
  // "b c" (rank 11) beats "a b" (rank 12), and "a bc" is no merge: "abc" (269) is unreachable.
  EXPECT_EQ(tok.encode("abc", false), (Ids{97, 267}));
  EXPECT_EQ(tok.encode("ab", false), (Ids{268}));
  EXPECT_EQ(tok.encode("abcabc", false), (Ids{97, 267, 97, 267}));
  // With ignore_merges (the fixture's setting) a piece that is itself in the vocab wins.
  EXPECT_EQ(fixture().encode("abc", false), (Ids{269}));
  EXPECT_EQ(fixture().encode("abcabc", false), (Ids{97, 267, 97, 267}));
}

TEST(Tokenizer, SplitsWhitespaceRunsLikeLlama3Pattern) {
  Tokenizer tok = fixture();
  // "\s+(?!\S)" leaves the last space of a run to the next word.
  EXPECT_EQ(tok.encode("hello  world", false), (Ids{259, 32, 264}));
  EXPECT_EQ(tok.encode("a   b", false), (Ids{97, 265, 32, 98}));
  EXPECT_EQ(tok.pre_tokenize("HE'S  x\r\n\r\n12345"), byte_level({"HE", "'S", " ", " x", "\r\n\r\n", "123", "45"}));
}

TEST(Tokenizer, IgnoreMergesEmitsWholePieceFoundInVocab) {
  EXPECT_EQ(fixture().encode(" xyz", false), (Ids{270}));
  json j = fixture_json();
  j["model"]["ignore_merges"] = false;
  EXPECT_EQ(must_load(j).encode(" xyz", false), (Ids{32, 120, 121, 122}));
}

TEST(Tokenizer, TemplateProcessingAddsBosOnlyWithSpecialTokens) {
  Tokenizer tok = fixture();
  EXPECT_EQ(tok.encode("hello world"), (Ids{300, 259, 264}));
  EXPECT_EQ(tok.encode("hello world", true), (Ids{300, 259, 264}));
  EXPECT_EQ(tok.encode("hello world", false), (Ids{259, 264}));
  EXPECT_EQ(tok.encode(""), (Ids{300}));
  EXPECT_EQ(tok.encode("", false), (Ids{}));
}

TEST(Tokenizer, AddBosTokenPrependsBosWhenPostProcessorAddsNone) {
  json j = fixture_json();
  j["post_processor"] = nullptr;
  const json config = {{"bos_token", "<|begin_of_text|>"}, {"add_bos_token", true}};
  EXPECT_EQ(must_load(j, &config).encode("hello"), (Ids{300, 259}));
  EXPECT_EQ(must_load(j).encode("hello"), (Ids{259}));
  // A template that already adds BOS is not doubled.
  EXPECT_EQ(must_load(fixture_json(), &config).encode("hello"), (Ids{300, 259}));
}

TEST(Tokenizer, SplitsOutSpecialTokensLongestFirst) {
  Tokenizer tok = fixture();
  EXPECT_EQ(tok.encode("<|begin_of_text|>hello<|eot_id|>", false), (Ids{300, 259, 302}));
  EXPECT_EQ(tok.encode("hello<|eot_id|><|eot_id|>", false), (Ids{259, 302, 302}));
  EXPECT_EQ(tok.encode("<|start|>!", false), (Ids{304}));
  EXPECT_EQ(tok.encode("<|start|>?", false), (Ids{303, 63}));
  // Text next to an added token is its own pre-tokenizer input: " world" keeps its space.
  EXPECT_EQ(tok.encode("hello<|eot_id|> world", false), (Ids{259, 302, 264}));
}

TEST(Tokenizer, LeavesSpecialTokensAsTextWhenParseSpecialIsFalse) {
  Tokenizer tok = fixture();
  const Ids ids = tok.encode("<|eot_id|>", false, /*parse_special=*/false);
  // Pieces "<|", "eot", "_id", "|>", no merges among them: one id per byte.
  EXPECT_EQ(ids, (Ids{60, 124, 101, 111, 116, 95, 105, 100, 124, 62}));
  EXPECT_EQ(tok.decode(ids), "<|eot_id|>");
  // BOS still comes from the post-processor.
  EXPECT_EQ(tok.encode("<|eot_id|>", true, false).front(), 300);
}

TEST(Tokenizer, SplitsNonSpecialAddedTokensEvenWhenParseSpecialIsFalse) {
  Tokenizer tok = fixture();
  EXPECT_EQ(tok.encode("ab<tool>ab", false, false), (Ids{268, 305, 268}));
  EXPECT_EQ(tok.encode("ab<tool>ab", false, true), (Ids{268, 305, 268}));
}

TEST(Tokenizer, AddedTokenLstripRstripAbsorbSurroundingWhitespace) {
  json j = fixture_json();
  j["added_tokens"][5]["lstrip"] = true;
  j["added_tokens"][5]["rstrip"] = true;
  Tokenizer tok = must_load(j);
  EXPECT_EQ(tok.encode("ab  <tool>  ab", false), (Ids{268, 305, 268}));
  EXPECT_EQ(fixture().encode("ab  <tool>  ab", false), (Ids{268, 265, 305, 32, 32, 268}));
}

TEST(Tokenizer, SingleWordAddedTokenMatchesOnlyBetweenNonWordCharacters) {
  json j = fixture_json();
  j["added_tokens"][5]["single_word"] = true;
  Tokenizer tok = must_load(j);
  EXPECT_EQ(tok.encode(" <tool> ", false), (Ids{32, 305, 32}));
  EXPECT_EQ(tok.encode("x<tool>", false), (Ids{120, 60, 116, 111, 111, 108, 62}));
}

TEST(Tokenizer, DecodesAndSkipsSpecialTokensOnRequest) {
  Tokenizer tok = fixture();
  const Ids ids = {300, 259, 264, 305, 302};
  EXPECT_EQ(tok.decode(ids), "<|begin_of_text|>hello world<tool><|eot_id|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "hello world<tool>");
  EXPECT_EQ(tok.decode({259, 99999, -1, 280}), "hello");  // ids not in the vocabulary are dropped
}

TEST(Tokenizer, ReportsVocabularyMetadata) {
  Tokenizer tok = fixture();
  EXPECT_EQ(tok.vocab_size(), 306);
  EXPECT_EQ(tok.token_to_id("Ġworld"), 264);
  EXPECT_EQ(tok.token_to_id("<tool>"), 305);
  EXPECT_EQ(tok.token_to_id("nope"), std::nullopt);
  EXPECT_EQ(tok.id_to_token(264), "Ġworld");
  EXPECT_EQ(tok.id_to_token(280), std::nullopt);
  EXPECT_TRUE(tok.is_special(300));
  EXPECT_TRUE(tok.is_special(304));
  EXPECT_FALSE(tok.is_special(305));
  EXPECT_FALSE(tok.is_special(259));
  EXPECT_FALSE(tok.is_special(-1));
  EXPECT_EQ(tok.bos_id(), 300);
  EXPECT_EQ(tok.eos_id(), 302);  // from the AddedToken-object form in tokenizer_config.json
}

TEST(Tokenizer, BosAndEosAreUnsetWithoutTokenizerConfig) {
  Tokenizer tok = must_load(fixture_json());
  EXPECT_EQ(tok.bos_id(), std::nullopt);
  EXPECT_EQ(tok.eos_id(), std::nullopt);
}

TEST(Tokenizer, TokenBytesArePartialUtf8ForSplitCharacters) {
  Tokenizer tok = fixture();
  const Ids ids = tok.encode("é", false);
  ASSERT_EQ(ids, (Ids{0xC3, 0xA9}));
  EXPECT_EQ(tok.token_bytes(ids[0]), "\xC3");
  EXPECT_EQ(tok.token_bytes(ids[1]), "\xA9");
  EXPECT_EQ(tok.token_bytes(264), " world");
  EXPECT_EQ(tok.token_bytes(302), "<|eot_id|>");
  EXPECT_EQ(tok.token_bytes(280), "");
  // decode replaces an incomplete sequence, as HF's errors="replace" does.
  EXPECT_EQ(tok.decode({ids[0]}), "\xEF\xBF\xBD");
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer variants.

TEST(Tokenizer, Gpt2ByteLevelAddsPrefixSpaceAndUsesGpt2Pattern) {
  Tokenizer tok = must_load(gpt2_json());
  EXPECT_EQ(tok.pre_tokenize("Hello world's  test\n\n"), byte_level({" Hello", " world", "'s", " ", " test", "\n\n"}));
  EXPECT_EQ(tok.encode("hello world"), (Ids{32, 259, 264}));  // ByteLevel post-processor adds nothing
  EXPECT_EQ(tok.encode(" world"), (Ids{264}));
  EXPECT_EQ(tok.decode(tok.encode("hello world")), " hello world");
}

TEST(Tokenizer, Qwen2PatternSplitsDigitsAndKeepsLetterPrefixes) {
  BpeTrainOptions options;
  options.vocab_size = 300;
  auto trained = train_byte_level_bpe("hello world", options);
  ASSERT_TRUE(trained.ok()) << trained.status().to_string();
  Tokenizer tok = must_load(*trained);
  EXPECT_EQ(tok.pre_tokenize("Hello, world! 123 中文\r\n  x"),
            byte_level({"Hello", ",", " world", "!", " ", "1", "2", "3", " 中文", "\r\n", " ", " x"}));
  EXPECT_EQ(tok.pre_tokenize("I'M here"), byte_level({"I", "'M", " here"}));
}

json with_split(const json& pattern, const std::string& behavior, bool invert = false) {
  json j = fixture_json();
  j["pre_tokenizer"]["pretokenizers"][0] = {
      {"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
  return j;
}

TEST(Tokenizer, SplitBehavioursMatchHfDefinitions) {
  const json dash = {{"String", "-"}};
  const std::string text = "a-b--c";
  EXPECT_EQ(must_load(with_split(dash, "Isolated")).pre_tokenize(text),
            (std::vector<std::string>{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(must_load(with_split(dash, "Removed")).pre_tokenize(text), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(must_load(with_split(dash, "MergedWithPrevious")).pre_tokenize(text),
            (std::vector<std::string>{"a-", "b-", "-", "c"}));
  EXPECT_EQ(must_load(with_split(dash, "MergedWithNext")).pre_tokenize(text),
            (std::vector<std::string>{"a", "-b", "-", "-c"}));
  EXPECT_EQ(must_load(with_split(dash, "Contiguous")).pre_tokenize(text),
            (std::vector<std::string>{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(must_load(with_split({{"Regex", "[a-z]"}}, "Removed", /*invert=*/true)).pre_tokenize(text),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(must_load(with_split({{"Regex", "-+"}}, "Isolated")).pre_tokenize(text),
            (std::vector<std::string>{"a", "-", "b", "--", "c"}));
}

TEST(Tokenizer, NfcNormalizerIsAccepted) {
  json j = fixture_json();
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(must_load(j).encode("hello world", false), (Ids{259, 264}));
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
  EXPECT_EQ(must_load(j).encode("hello world", false), (Ids{259, 264}));
}

TEST(Tokenizer, AcceptsMergesAsPairs) {
  json j = fixture_json();
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    pairs.push_back({s.substr(0, space), s.substr(space + 1)});
  }
  j["model"]["merges"] = pairs;
  EXPECT_EQ(must_load(j).encode("hello world abc", false), (Ids{259, 264, 32, 97, 267}));
}

// ---------------------------------------------------------------------------------------------
// Round trips.

Tokenizer trained_tokenizer() {
  static const json trained = [] {
    BpeTrainOptions options;
    options.vocab_size = 1024;
    options.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    auto j = train_byte_level_bpe(synthetic_corpus(7, 200'000), options);
    EXPECT_TRUE(j.ok()) << j.status().to_string();
    return *j;
  }();
  return must_load(trained);
}

TEST(Tokenizer, RoundTripsSyntheticCorpusExactly) {
  const std::string text = synthetic_corpus(99, 100'000);
  for (const Tokenizer& tok : {trained_tokenizer(), fixture()}) {
    const Ids ids = tok.encode(text, false);
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_EQ(concat_token_bytes(tok, ids), text);
  }
}

TEST(Tokenizer, RoundTripsTrickyStringsExactly) {
  for (const Tokenizer& tok : {trained_tokenizer(), fixture()}) {
    for (const std::string& s : tricky_strings()) {
      const Ids ids = tok.encode(s, false);
      EXPECT_EQ(tok.decode(ids), s) << "text: '" << s << "'";
      EXPECT_EQ(concat_token_bytes(tok, ids), s) << "text: '" << s << "'";
    }
  }
}

TEST(Tokenizer, RoundTripsSpecialTokenTextBothWays) {
  Tokenizer tok = trained_tokenizer();
  const std::string text = "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>";
  const Ids parsed = tok.encode(text, false, true);
  const Ids literal = tok.encode(text, false, false);
  EXPECT_EQ(parsed.front(), *tok.token_to_id("<|im_start|>"));
  EXPECT_EQ(parsed.back(), *tok.token_to_id("<|endoftext|>"));
  for (int32_t id : literal) EXPECT_FALSE(tok.is_special(id));
  EXPECT_EQ(tok.decode(parsed), text);
  EXPECT_EQ(tok.decode(literal), text);
  EXPECT_EQ(tok.decode(parsed, /*skip_special_tokens=*/true), "user\nhi\n");
}

TEST(Tokenizer, InvalidUtf8InputKeepsEveryByteInTokens) {
  const std::string text = "ok \xff\xfe bad \xc3( \xe2\x82 end\xc3";
  // decode() shows each maximal ill-formed subpart as one U+FFFD, as HF's errors="replace".
  const std::string shown = "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD( \xEF\xBF\xBD end\xEF\xBF\xBD";
  for (const Tokenizer& tok : {trained_tokenizer(), fixture()}) {
    const Ids ids = tok.encode(text, false);
    EXPECT_EQ(concat_token_bytes(tok, ids), text);
    EXPECT_EQ(tok.decode(ids), shown);
  }
  Tokenizer gpt2 = must_load(gpt2_json());  // add_prefix_space puts a space in front
  EXPECT_EQ(concat_token_bytes(gpt2, gpt2.encode(text)), " " + text);
  EXPECT_EQ(gpt2.decode(gpt2.encode(text)), " " + shown);
}

TEST(Tokenizer, EncodeIsThreadSafeAndMatchesSingleThreaded) {
  Tokenizer tok = trained_tokenizer();
  std::vector<std::string> texts;
  for (uint64_t seed = 0; seed < 8; ++seed) texts.push_back(synthetic_corpus(1000 + seed, 20'000));
  std::vector<Ids> expected;
  {
    Tokenizer fresh = trained_tokenizer();  // its own (cold) cache
    for (const auto& t : texts) expected.push_back(fresh.encode(t));
  }
  std::vector<Ids> got(texts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < texts.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = tok.encode(texts[i]); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------------------------
// Load errors name the file and the field.

void expect_error(const json& j, StatusCode code, const std::vector<std::string>& fragments,
                  const json* config = nullptr) {
  auto tok = Tokenizer::from_json(j, "tokenizer.json", config);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), code) << tok.status().to_string();
  for (const auto& f : fragments) {
    EXPECT_NE(tok.status().message().find(f), std::string::npos)
        << "'" << tok.status().message() << "' lacks '" << f << "'";
  }
}

const std::string kFile = "tokenizer.json: ";

TEST(TokenizerErrors, TopLevelMustBeAnObject) {
  expect_error(json::array(), StatusCode::kDataLoss, {kFile, "top level must be an object"});
}

TEST(TokenizerErrors, MissingModelOrVocabNamesTheField) {
  json j = fixture_json();
  j.erase("model");
  expect_error(j, StatusCode::kDataLoss, {kFile + "model is missing"});
  j = fixture_json();
  j["model"].erase("vocab");
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.vocab is missing"});
  j = fixture_json();
  j["model"].erase("merges");
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges is missing"});
}

TEST(TokenizerErrors, WrongJsonTypesNameTheField) {
  json j = fixture_json();
  j["model"]["vocab"] = json::array();
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.vocab must be an object (got array)"});
  j = fixture_json();
  j["model"]["vocab"]["abc"] = "x";
  expect_error(j, StatusCode::kDataLoss, {"model.vocab['abc'] must be a token id"});
  j = fixture_json();
  j["model"]["vocab"]["abc"] = -4;
  expect_error(j, StatusCode::kDataLoss, {"model.vocab['abc']"});
  j = fixture_json();
  j["model"]["merges"] = "h e";
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges must be an array (got string)"});
  j = fixture_json();
  j["model"]["merges"][3] = 7;
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges[3] must be a string"});
  j = fixture_json();
  j["model"]["merges"][2] = "hell";
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges[2]", "separated by a space"});
  j = fixture_json();
  j["model"]["ignore_merges"] = "yes";
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.ignore_merges must be a boolean (got string)"});
  j = fixture_json();
  j["added_tokens"][1]["special"] = "true";
  expect_error(j, StatusCode::kDataLoss, {kFile + "added_tokens[1].special must be a boolean"});
  j = fixture_json();
  j["added_tokens"][2].erase("content");
  expect_error(j, StatusCode::kDataLoss, {kFile + "added_tokens[2].content is missing"});
  j = fixture_json();
  j["added_tokens"][0]["id"] = "300";
  expect_error(j, StatusCode::kDataLoss, {kFile + "added_tokens[0].id must be a token id"});
  j = fixture_json();
  j["pre_tokenizer"]["pretokenizers"] = {{"type", "Split"}};
  expect_error(j, StatusCode::kDataLoss, {kFile + "pre_tokenizer.pretokenizers must be an array"});
}

TEST(TokenizerErrors, MergeReferringToUnknownTokenNamesMergeAndToken) {
  json j = fixture_json();
  j["model"]["merges"].push_back("x q");
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges[14] refers to token 'xq' not in vocab"});
  j = fixture_json();
  j["model"]["merges"][12] = "ab zz";
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.merges[12] refers to token 'zz' not in vocab"});
}

TEST(TokenizerErrors, VocabWithoutAllByteTokensIsRejected) {
  json j = fixture_json();
  j["model"]["vocab"].erase("Ā");
  j["model"]["vocab"]["Ā-gone"] = 0;
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.vocab lacks the byte-level token 'Ā' for byte 0x00"});
}

TEST(TokenizerErrors, InconsistentIdsAreRejected) {
  json j = fixture_json();
  j["model"]["vocab"]["dup"] = 5;
  expect_error(j, StatusCode::kDataLoss, {kFile + "model.vocab gives id 5 to both"});
  j = fixture_json();
  j["added_tokens"][5]["id"] = 259;
  expect_error(j, StatusCode::kDataLoss, {kFile + "added_tokens[5].id 259", "'hello'"});
  j = fixture_json();
  j["added_tokens"][5]["content"] = "hello";
  expect_error(j, StatusCode::kDataLoss,
               {kFile + "added_tokens[5] 'hello' has id 305 but model.vocab gives it id 259"});
  j = fixture_json();
  j["added_tokens"][5]["id"] = 300;
  expect_error(j, StatusCode::kDataLoss, {kFile + "added_tokens[5].id 300 is given to two added tokens"});
}

TEST(TokenizerErrors, UnsupportedModelTypeIsUnimplemented) {
  json j = fixture_json();
  j["model"]["type"] = "Unigram";
  expect_error(j, StatusCode::kUnimplemented, {kFile + "unsupported model.type 'Unigram'"});
  j = fixture_json();
  j["model"]["byte_fallback"] = true;
  expect_error(j, StatusCode::kUnimplemented, {kFile + "model.byte_fallback"});
  j = fixture_json();
  j["model"]["dropout"] = 0.1;
  expect_error(j, StatusCode::kUnimplemented, {kFile + "model.dropout"});
}

TEST(TokenizerErrors, UnsupportedNormalizerIsUnimplementedAndNamed) {
  json j = fixture_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_error(j, StatusCode::kUnimplemented, {kFile + "unsupported normalizer.type 'Lowercase'"});
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}, {{"type", "NFKC"}}})}};
  expect_error(j, StatusCode::kUnimplemented, {"normalizer.normalizers[1].type 'NFKC'"});
  j["normalizer"] = "NFC";
  expect_error(j, StatusCode::kDataLoss, {kFile + "normalizer must be an object"});
}

TEST(TokenizerErrors, UnsupportedOrBrokenPreTokenizerIsNamed) {
  json j = fixture_json();
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Metaspace"}};
  expect_error(j, StatusCode::kUnimplemented, {kFile + "unsupported pre_tokenizer.pretokenizers[0].type 'Metaspace'"});
  expect_error(with_split({{"Regex", "(unclosed"}}, "Isolated"), StatusCode::kDataLoss,
               {kFile + "pre_tokenizer.pretokenizers[0].pattern.Regex '(unclosed'", "does not compile"});
  expect_error(with_split({{"Regex", "x"}}, "Sideways"), StatusCode::kDataLoss,
               {kFile + "pre_tokenizer.pretokenizers[0].behavior 'Sideways'"});
  expect_error(with_split({{"Glob", "x"}}, "Isolated"), StatusCode::kDataLoss,
               {kFile + "pre_tokenizer.pretokenizers[0].pattern must have"});
  j = fixture_json();
  j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0];
  expect_error(j, StatusCode::kUnimplemented, {kFile + "pre_tokenizer has no ByteLevel step"});
}

TEST(TokenizerErrors, UnsupportedDecoderOrPostProcessorIsNamed) {
  json j = fixture_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, StatusCode::kUnimplemented, {kFile + "unsupported decoder.type 'WordPiece'"});
  j["decoder"] = nullptr;
  expect_error(j, StatusCode::kUnimplemented, {kFile + "decoder is null"});
  j = fixture_json();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_error(j, StatusCode::kUnimplemented, {kFile + "unsupported post_processor.type 'RobertaProcessing'"});
  j = fixture_json();
  j["post_processor"]["processors"][1]["single"][0]["SpecialToken"]["id"] = "<s>";
  expect_error(j, StatusCode::kDataLoss,
               {kFile + "post_processor.processors[1].single[0].SpecialToken.id '<s>' is not in "
                        "post_processor.processors[1].special_tokens"});
  j = fixture_json();
  j["post_processor"]["processors"][1]["special_tokens"]["<|begin_of_text|>"]["ids"][0] = 299;
  expect_error(j, StatusCode::kDataLoss, {"special_tokens['<|begin_of_text|>'].ids[0] 299 is not a token id"});
}

TEST(TokenizerErrors, TokenizerConfigTokensMustExist) {
  const json config = {{"eos_token", "</s>"}};
  expect_error(fixture_json(), StatusCode::kDataLoss, {"tokenizer_config.json: eos_token '</s>' is not a token"},
               &config);
  const json no_bos = {{"add_bos_token", true}};
  expect_error(fixture_json(), StatusCode::kDataLoss, {"tokenizer_config.json: add_bos_token"}, &no_bos);
}

TEST(TokenizerErrors, LoadFileReportsMissingAndUnparsableFiles) {
  auto missing = Tokenizer::load_file("/nonexistent/dir/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/tokenizer.json"), std::string::npos);

  const std::string path = testing::TempDir() + "/hotswap_bad_tokenizer.json";
  std::ofstream(path) << "{\"model\": ";
  auto bad = Tokenizer::load_file(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find(path + ": not valid JSON"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace hotswap::engine
