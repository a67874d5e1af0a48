// Synthetic English-like technical text for tokenizer training and tests.
//
// Written by this project from its own word lists and a small grammar (no third-party text):
// sentences and paragraphs about GPUs, clusters, caches and migration, numbers and units,
// code-like lines (`kv_cache[3] = 42;`), lists, log lines, "\r\n" line ends now and then, and a
// few non-ASCII words (é, ü, 中文, emoji) so multi-byte UTF-8 is covered. Deterministic: the
// output depends only on the seed and the size, through the project's own splitmix64 (never a
// std:: distribution, whose output differs between standard libraries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace hotswap::engine {

// About `approx_bytes` bytes of text (it stops at the first paragraph end past that size).
std::string synthetic_corpus(uint64_t seed, size_t approx_bytes);

}  // namespace hotswap::engine
