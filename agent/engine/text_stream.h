// The text of one generated sequence as it grows token by token: decides which bytes are safe
// to show a client now. Bytes are held back while they could be the start of a stop string, or
// are an incomplete UTF-8 character; a stop string ends the text just before it.
//
// The cursor (bytes emitted so far) is part of a sequence's state, so a migrated sequence
// continues its stream exactly.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hotswap::engine {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_strings = {});

  struct Update {
    std::string text;      // newly safe to show
    bool stopped = false;  // a stop string matched; text ends just before it
  };
  Update append(std::string_view token_bytes);
  // At the end of generation without a stop string: everything still held back, with an
  // incomplete trailing UTF-8 character replaced by U+FFFD.
  std::string flush();

  const std::string& bytes() const { return bytes_; }
  size_t emitted() const { return emitted_; }
  // Restores a stream from a snapshot (migration).
  void restore(std::string bytes, size_t emitted) { bytes_ = std::move(bytes); emitted_ = emitted; }

 private:
  std::vector<std::string> stops_;
  std::string bytes_;
  size_t emitted_ = 0;
};

// Length of the longest prefix of s that ends on a UTF-8 character boundary (an incomplete
// trailing sequence is excluded; invalid bytes count as complete single characters).
size_t utf8_complete_prefix(std::string_view s);

}  // namespace hotswap::engine
