// synthetic_corpus: deterministic, about the requested size, and covering the text features the
// tokenizer tests rely on.
#include "agent/engine/synthetic_corpus.h"

#include <gtest/gtest.h>

#include "agent/engine/byte_level.h"

namespace hotswap::engine {
namespace {

TEST(SyntheticCorpus, SameSeedGivesSameText) {
  EXPECT_EQ(synthetic_corpus(42, 50'000), synthetic_corpus(42, 50'000));
  EXPECT_NE(synthetic_corpus(42, 50'000), synthetic_corpus(43, 50'000));
}

TEST(SyntheticCorpus, IsAboutTheRequestedSize) {
  for (size_t n : {0u, 1u, 1000u, 100'000u}) {
    const std::string text = synthetic_corpus(1, n);
    EXPECT_GE(text.size(), n);
    EXPECT_LT(text.size(), n + 4096);
  }
}

TEST(SyntheticCorpus, IsValidUtf8WithMultiByteCodeAndLineEndings) {
  const std::string text = synthetic_corpus(5, 200'000);
  EXPECT_EQ(utf8_lossy(text), text);  // well-formed UTF-8
  for (const char* needle : {"\r\n", "\n\n", "] = ", ";", "é", "中", "\xF0\x9F", "```", "[INFO]", "'s", "?"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle;
  }
}

// A fixed digest pins the output across compilers and standard libraries.
TEST(SyntheticCorpus, OutputIsStableAcrossPlatforms) {
  const std::string text = synthetic_corpus(2024, 10'000);
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  EXPECT_EQ(h, 18319679300065448026ull) << "size " << text.size();
}

}  // namespace
}  // namespace hotswap::engine
