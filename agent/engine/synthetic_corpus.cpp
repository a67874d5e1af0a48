#include "agent/engine/synthetic_corpus.h"

#include <array>
#include <span>
#include <string_view>
#include <vector>

namespace hotswap::engine {
namespace {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n) for word picking; n is small.
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  bool chance(int percent) { return below(100) < static_cast<size_t>(percent); }

 private:
  uint64_t state_;
};

using Words = std::span<const std::string_view>;

constexpr std::string_view kNouns[] = {
    "GPU",         "cluster",    "cache",      "kernel",     "tensor",     "node",        "pod",       "replica",
    "scheduler",   "token",      "batch",      "layer",      "block",      "page",        "request",   "stream",
    "queue",       "buffer",     "weight",     "shard",      "model",      "server",      "client",    "operator",
    "controller",  "agent",      "engine",     "checkpoint", "snapshot",   "migration",   "allocator", "prefix",
    "sequence",    "decoder",    "encoder",    "attention",  "head",       "matrix",      "vector",    "warp",
    "thread",      "register",   "bandwidth",  "latency",    "throughput", "budget",      "deadline",  "timeout",
    "heartbeat",   "lease",      "watch",      "event",      "condition",  "phase",       "status",    "generation",
    "manifest",    "volume",     "socket",     "packet",     "channel",    "transfer",    "copy",      "barrier",
    "fence",       "semaphore",  "mutex",      "lock",       "counter",    "histogram",   "metric",    "trace",
    "span",        "log",        "error",      "retry",      "backoff",    "window",      "context",   "prompt",
    "sampler",     "logit",      "vocabulary", "merge",      "byte",       "offset",      "stride",    "shape",
    "dtype",       "precision",  "quantizer",  "scale",      "zero point", "memory pool", "free list", "hash table",
    "ring buffer", "work queue", "host",       "device",     "driver",     "runtime",     "compiler",  "graph",
    "op",          "launch",     "grid",       "tile",       "fragment",   "slot",        "session",   "tenant",
    "priority",    "quota",      "limit",      "node pool",  "zone",       "region",      "rack",      "link",
    "fabric",
};

constexpr std::string_view kVerbs[] = {
    "migrates",   "allocates",    "evicts",     "schedules",  "copies",     "streams",    "flushes",    "compacts",
    "pins",       "unpins",       "reserves",   "releases",   "shards",     "replicates", "restores",   "snapshots",
    "drains",     "cordons",      "restarts",   "watches",    "reconciles", "updates",    "patches",    "reads",
    "writes",     "verifies",     "checksums",  "compresses", "decodes",    "encodes",    "tokenizes",  "samples",
    "prefetches", "overlaps",     "serializes", "batches",    "splits",     "merges",     "rotates",    "scales",
    "quantizes",  "dequantizes",  "broadcasts", "reduces",    "gathers",    "scatters",   "transposes", "fuses",
    "launches",   "synchronizes", "measures",   "reports",    "retries",    "rejects",    "accepts",    "forwards",
    "hands over", "waits for",    "times out",  "recovers",   "resumes",    "pauses",     "moves",      "tracks",
};

constexpr std::string_view kAdjectives[] = {
    "hot",      "cold",      "warm",      "idle",          "busy",   "stale",       "fresh",      "dirty",
    "clean",    "pinned",    "shared",    "private",       "remote", "local",       "pending",    "ready",
    "degraded", "healthy",   "partial",   "complete",      "exact",  "approximate", "contiguous", "fragmented",
    "paged",    "sliding",   "causal",    "fused",         "naive",  "tiled",       "vectorized", "async",
    "blocking", "bounded",   "unbounded", "small",         "large",  "tiny",        "huge",       "fast",
    "slow",     "cheap",     "expensive", "deterministic", "random", "sorted",      "stable",     "unstable",
    "primary",  "secondary", "spare",     "new",           "old",    "next",        "previous",   "current",
    "target",   "source",    "mixed",     "half",          "full",   "empty",       "quantized",
};

constexpr std::string_view kAdverbs[] = {
    "quickly", "slowly", "eagerly", "lazily", "safely", "atomically", "concurrently", "eventually", "rarely",  "often",
    "always",  "never",  "again",   "first",  "later",  "only",       "mostly",       "exactly",    "roughly", "twice",
};

constexpr std::string_view kPrepositions[] = {
    "to",     "from",    "into", "onto", "across", "between", "behind", "before", "after",
    "during", "without", "with", "over", "under",  "per",     "inside", "beside", "through",
};

constexpr std::string_view kDeterminers[] = {"the", "the", "the",  "a",    "each", "every",
                                             "one", "no",  "this", "that", "its"};

constexpr std::string_view kConnectives[] = {
    "Then",  "Meanwhile", "However",         "Afterwards", "In practice",       "As a result", "Otherwise", "Still",
    "First", "Finally",   "Because of this", "In short",   "On the other hand", "Usually",     "Sometimes",
};

// Multi-byte words: accents, CJK, Greek, Cyrillic and emoji.
constexpr std::string_view kForeignWords[] = {
    "café", "naïve", "über", "Müller", "résumé", "façade", "déjà vu", "Zürich", "straße", "señal",
    "niño", "中文",  "模型", "缓存",   "迁移",   "集群",   "令牌",    "日本語", "한국어", "Ω",
    "λ",    "μs",    "Δt",   "π",      "привет", "ключ",   "🚀",       "✅",      "🙂",   "🔥",
    "⚡",    "📦",     "→",    "≈",      "≤",      "—",      "…",       "°C",
};

constexpr std::string_view kUnits[] = {"ms",   "us",       "ns", "s", "GiB", "MiB", "KiB",
                                       "GB/s", "tokens/s", "%",  "W", "MHz", "x"};

constexpr std::string_view kIdentifiers[] = {
    "kv_cache",  "block_table", "seq_len",     "batch_size", "num_heads",   "head_dim",  "slot_mapping",
    "page_size", "free_blocks", "token_ids",   "logits",     "weights",     "scale",     "offset",
    "stream",    "node_name",   "retry_count", "timeout_ms", "bytes_per_s", "layer_idx", "step",
    "rank",      "world_size",  "queue_depth", "hidden",     "out",
};

constexpr std::string_view kFunctions[] = {
    "migrate",      "evict",     "allocate",   "copy_blocks", "launch_kernel", "decode_step", "prefill",
    "sample_token", "reconcile", "watch_pods", "drain_node",  "checksum",      "serialize",   "restore",
    "flush",        "softmax",   "matmul",     "rms_norm",    "rope",          "attention",   "tokenize",
    "detokenize",   "send",      "recv",       "wait_for",    "report_status",
};

constexpr std::string_view kLogLevels[] = {"INFO", "WARN", "ERROR", "DEBUG", "TRACE"};

std::string_view pick(SplitMix64& rng, Words words) {
  return words[rng.below(words.size())];
}

// Made-up code names ("velmora", "strikandu"): a fixed lexicon built from syllables, the same for
// every seed, drawn with a heavy head and a long tail so the text has the many rare words that a
// BPE vocabulary of a few thousand tokens needs to fill up.
constexpr std::string_view kOnsets[] = {"",   "",   "b",  "c",  "d",  "f",  "g",   "h",  "j",  "k",  "l",  "m",  "n",
                                        "p",  "r",  "s",  "t",  "v",  "w",  "z",   "br", "cr", "dr", "fl", "gr", "kr",
                                        "pl", "pr", "sk", "sl", "sp", "st", "str", "th", "tr", "ch", "sh", "qu"};
constexpr std::string_view kVowels[] = {"a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "io", "y"};
constexpr std::string_view kCodas[] = {"",  "",  "",   "n",  "r",  "s",  "l",  "m",
                                       "x", "t", "nd", "rk", "st", "ng", "rt", "ll"};
constexpr size_t kLexiconSize = 6000;

const std::vector<std::string>& code_name_lexicon() {
  static const std::vector<std::string> lexicon = [] {
    SplitMix64 rng(0x6C657869636F6E);  // fixed: the lexicon does not depend on the corpus seed
    std::vector<std::string> words;
    words.reserve(kLexiconSize);
    while (words.size() < kLexiconSize) {
      std::string w;
      const size_t syllables = 2 + rng.below(2);
      for (size_t i = 0; i < syllables; ++i) {
        w += pick(rng, kOnsets);
        w += pick(rng, kVowels);
        w += pick(rng, kCodas);
      }
      words.push_back(std::move(w));
    }
    return words;
  }();
  return lexicon;
}

// Index r1 mod (r2 + 1): small indices are common, large ones rare (density ~ log(N / i)).
const std::string& code_name(SplitMix64& rng) {
  const auto& lexicon = code_name_lexicon();
  return lexicon[rng.below(rng.below(lexicon.size()) + 1)];
}

std::string capitalized(std::string_view word) {
  std::string s(word);
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// "KvBlockAllocator", "VelmoraScheduler": a type name from two or three parts.
std::string type_name(SplitMix64& rng) {
  std::string s = capitalized(rng.chance(50) ? std::string_view(code_name(rng)) : pick(rng, kNouns));
  const size_t parts = 1 + rng.below(2);
  for (size_t i = 0; i < parts; ++i) {
    std::string_view noun = pick(rng, kNouns);
    if (noun.find(' ') != std::string_view::npos) noun = "Pool";
    s += capitalized(noun);
  }
  return s;
}

void append_number(SplitMix64& rng, std::string& out) {
  switch (rng.below(5)) {
    case 0:
      out += std::to_string(rng.below(10));
      break;
    case 1:
      out += std::to_string(rng.below(1000));
      break;
    case 2:
      out += std::to_string(rng.below(100000));
      break;
    case 3:
      out += std::to_string(rng.below(100));
      out += '.';
      out += std::to_string(rng.below(100));
      break;
    default:
      out += std::to_string(1u << rng.below(17));
      break;
  }
}

void append_noun_phrase(SplitMix64& rng, std::string& out) {
  out += pick(rng, kDeterminers);
  out += ' ';
  if (rng.chance(45)) {
    out += pick(rng, kAdjectives);
    out += ' ';
  }
  if (rng.chance(8)) {
    out += pick(rng, kForeignWords);
    out += ' ';
  }
  if (rng.chance(30)) {
    out += rng.chance(50) ? capitalized(code_name(rng)) : code_name(rng);
    out += ' ';
  }
  out += pick(rng, kNouns);
  if (rng.chance(12)) {
    out += ' ';
    append_number(rng, out);
  }
}

std::string sentence(SplitMix64& rng) {
  std::string s;
  if (rng.chance(20)) {
    s += pick(rng, kConnectives);
    s += ", ";
  }
  append_noun_phrase(rng, s);
  s += ' ';
  if (rng.chance(25)) {
    s += pick(rng, kAdverbs);
    s += ' ';
  }
  s += pick(rng, kVerbs);
  s += ' ';
  append_noun_phrase(rng, s);
  if (rng.chance(50)) {
    s += ' ';
    s += pick(rng, kPrepositions);
    s += ' ';
    append_noun_phrase(rng, s);
  }
  if (rng.chance(20)) {
    s += " in ";
    append_number(rng, s);
    s += ' ';
    s += pick(rng, kUnits);
  }
  if (rng.chance(10)) {
    s += " (";
    s += pick(rng, kForeignWords);
    s += ")";
  }
  if (rng.chance(8)) {
    s += ", so it's `";
    s += pick(rng, kIdentifiers);
    s += "` that we'll check";
  }
  s = capitalized(s);
  const size_t end = rng.below(20);
  s += end < 15 ? "." : end < 18 ? "?" : "!";
  return s;
}

std::string code_line(SplitMix64& rng) {
  std::string s;
  if (rng.chance(10)) {
    s += '\t';
  } else if (rng.chance(50)) {
    s.append(4 * (1 + rng.below(2)), ' ');
  }
  switch (rng.below(6)) {
    case 0:
      s += pick(rng, kIdentifiers);
      s += '[';
      append_number(rng, s);
      s += "] = ";
      append_number(rng, s);
      s += ';';
      break;
    case 1:
      s += "if (";
      s += pick(rng, kIdentifiers);
      s += rng.chance(50) ? " > " : " <= ";
      append_number(rng, s);
      s += ") { ";
      s += pick(rng, kFunctions);
      s += '(';
      s += pick(rng, kIdentifiers);
      s += "); }";
      break;
    case 2:
      s += rng.chance(50) ? std::string("auto ") : type_name(rng) + " ";
      s += pick(rng, kIdentifiers);
      s += " = ";
      s += pick(rng, kFunctions);
      s += '(';
      s += pick(rng, kIdentifiers);
      s += ", ";
      s += pick(rng, kIdentifiers);
      s += ");";
      break;
    case 3:
      s += "def ";
      s += pick(rng, kFunctions);
      s += '_';
      s += code_name(rng);
      s += '(';
      s += pick(rng, kIdentifiers);
      s += "):";
      break;
    case 4:
      s += "for (int i = 0; i < ";
      s += pick(rng, kIdentifiers);
      s += "; ++i) ";
      s += pick(rng, kIdentifiers);
      s += "[i] += 0x";
      s += "0123456789abcdef"[rng.below(16)];
      s += "0123456789abcdef"[rng.below(16)];
      s += ';';
      break;
    default:
      s += "// ";
      s += pick(rng, kVerbs);
      s += ' ';
      s += pick(rng, kNouns);
      s += " -> ";
      s += pick(rng, kIdentifiers);
      break;
  }
  return s;
}

std::string log_line(SplitMix64& rng) {
  std::string s = "[";
  s += pick(rng, kLogLevels);
  s += "] ";
  s += pick(rng, kFunctions);
  s += ": ";
  s += pick(rng, kIdentifiers);
  s += '=';
  append_number(rng, s);
  s += ' ';
  s += pick(rng, kIdentifiers);
  s += "=\"";
  s += pick(rng, kNouns);
  s += "\" host=";
  s += code_name(rng);
  s += '-';
  append_number(rng, s);
  return s;
}

}  // namespace

std::string synthetic_corpus(uint64_t seed, size_t approx_bytes) {
  SplitMix64 rng(seed);
  std::string out;
  out.reserve(approx_bytes + 1024);
  while (out.size() < approx_bytes) {
    const std::string_view newline = rng.chance(5) ? "\r\n" : "\n";
    const size_t kind = rng.below(10);
    if (kind < 6) {  // a prose paragraph
      const size_t n = 2 + rng.below(6);
      for (size_t i = 0; i < n; ++i) {
        if (i > 0) out += rng.chance(5) ? "  " : " ";
        out += sentence(rng);
      }
    } else if (kind < 8) {  // a code block
      out += "```";
      out += newline;
      const size_t n = 2 + rng.below(5);
      for (size_t i = 0; i < n; ++i) {
        out += code_line(rng);
        out += newline;
      }
      out += "```";
    } else if (kind < 9) {  // a list under a heading
      out += rng.chance(50) ? "## " : "### ";
      out += capitalized(pick(rng, kNouns));
      out += newline;
      const size_t n = 2 + rng.below(4);
      for (size_t i = 0; i < n; ++i) {
        out += rng.chance(50) ? "- " : std::to_string(i + 1) + ". ";
        out += sentence(rng);
        out += newline;
      }
    } else {  // log lines
      const size_t n = 1 + rng.below(4);
      for (size_t i = 0; i < n; ++i) {
        if (i > 0) out += newline;
        out += log_line(rng);
      }
    }
    out += newline;
    out += newline;
  }
  return out;
}

}  // namespace hotswap::engine
