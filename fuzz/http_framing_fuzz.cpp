// libFuzzer: the connection guard's reading of HTTP/1.1 framing (common/http_framing.h) from
// hostile bytes, both directions. Its promises: no crash; the same answer whether the bytes
// come whole or split anywhere (the guard reads them as the socket hands them over); an error
// always has a status and says where; a failed framer stays failed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/http_framing.h"

namespace {

using hotswap::http::MessageFramer;

struct Outcome {
  int heads = 0, messages = 0, error_status = 0, head_requests = 0;
  MessageFramer::Phase phase = MessageFramer::Phase::kIdle;
};

Outcome run(MessageFramer::Side side, const char* data, size_t n, size_t split, int* head_answers) {
  // Every third response answers a HEAD: the queue the guard keeps, made up.
  MessageFramer f(side, 512, [head_answers] { return (*head_answers)++ % 3 == 2; });
  Outcome o;
  for (size_t i = 0; i < n; i += split) {
    auto p = f.feed(data + i, std::min(split, n - i));
    o.heads += p.heads;
    o.messages += p.messages;
    o.head_requests += static_cast<int>(p.head_requests.size());
    if (p.error_status != 0) {
      if (p.error.find("(at byte ") == std::string::npos) std::abort();
      if (!f.failed()) std::abort();
      o.error_status = p.error_status;
      break;
    }
  }
  o.phase = f.phase();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto side = data[0] & 1 ? MessageFramer::Side::kResponse : MessageFramer::Side::kRequest;
  const size_t split = 1 + (data[0] >> 1) % 13;
  const char* text = reinterpret_cast<const char*>(data + 1);
  const size_t n = size - 1;
  int answers_whole = 0, answers_split = 0;
  const Outcome whole = run(side, text, n, n == 0 ? 1 : n, &answers_whole);
  const Outcome pieces = run(side, text, n, split, &answers_split);
  if (whole.heads != pieces.heads || whole.messages != pieces.messages || whole.error_status != pieces.error_status ||
      whole.head_requests != pieces.head_requests || (whole.error_status == 0 && whole.phase != pieces.phase))
    std::abort();
  if (side == MessageFramer::Side::kRequest && whole.head_requests != whole.heads) std::abort();
  if (whole.messages > whole.heads) std::abort();
  return 0;
}
