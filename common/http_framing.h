// Follows the framing of one direction of an HTTP/1.1 connection (RFC 9112): where each
// message's head ends and its body (Content-Length, chunked, or until close) ends, without
// keeping the bytes. The connection guard uses one per direction to know, byte by byte,
// whether a client is sending a head or a body and whether a response is in flight. Input is
// bounded: a head (and a chunked body's trailers) of more than max_head_bytes is an error, as
// is anything that makes the framing ambiguous (Content-Length with Transfer-Encoding, two
// different lengths, a coding other than chunked) — what request smuggling lives on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hotswap::http {

class MessageFramer {
 public:
  enum class Side { kRequest, kResponse };
  enum class Phase { kIdle, kHead, kBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kUntilClose };

  // What one feed() found.
  struct Progress {
    int heads = 0;                // heads completed (for responses: final ones, not 1xx)
    int messages = 0;             // messages completed (ditto)
    std::vector<bool> head_requests;  // requests: for each head completed, in order, whether it is a HEAD
    int error_status = 0;         // 0, or the status a server answers the malformed input with
    std::string error;            // what is malformed, and where
  };

  // answers_head (responses only) is asked, as each final response head completes, whether
  // that response answers a HEAD request (and so has no body); the caller keeps that queue.
  MessageFramer(Side side, size_t max_head_bytes, std::function<bool()> answers_head = nullptr)
      : side_(side), max_head_bytes_(max_head_bytes), answers_head_(std::move(answers_head)) {}

  // Reads n more bytes of the direction. After an error the framer stays failed and reads
  // nothing more.
  Progress feed(const char* data, size_t n);

  Phase phase() const { return phase_; }
  bool failed() const { return failed_; }
  bool in_head() const { return phase_ == Phase::kHead; }
  bool in_body() const { return phase_ != Phase::kIdle && phase_ != Phase::kHead && phase_ != Phase::kUntilClose; }
  // Between messages: nothing of a message read yet.
  bool idle() const { return phase_ == Phase::kIdle; }

 private:
  bool parse_head(Progress* p);
  bool fail(Progress* p, int status, std::string what);
  void finish_message(Progress* p);

  Side side_;
  size_t max_head_bytes_;
  std::function<bool()> answers_head_;
  Phase phase_ = Phase::kIdle;
  bool failed_ = false;
  std::string head_;   // the head being read (bounded by max_head_bytes)
  std::string line_;   // a chunk-size line, a chunk's CRLF, or a trailer line
  size_t trailer_bytes_ = 0;
  uint64_t remaining_ = 0;
  uint64_t offset_ = 0;  // bytes of the direction read so far, for error messages
};

}  // namespace hotswap::http
